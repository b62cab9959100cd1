"""Alert, incident, reminder and digest notices rendered once (payload, title, text per format) for
every channel kind."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from services.notify.digest_messages import render_digest_text, render_digest_title
from services.notify.messages import (
    Fmt,
    render_group_text,
    render_group_title,
    render_incident_text,
    render_incident_title,
    render_text,
    render_title,
)
from services.notify.reminder_messages import render_reminder_text, render_reminder_title
from services.notify.rules import AlertState, NotifyKind
from shared.digests import Digest
from shared.incidents import STALL, Incident
from shared.reminders import Reminder
from shared.webhooks import (
    AlertPayload,
    Alerts,
    Announced,
    Audience,
    DigestOpenAlert,
    DigestPayload,
    IncidentPayload,
    ReminderPayload,
    alert_list,
    webhook_body,
)


def make_payload(
    state: AlertState,
    *,
    team_id: str | None,
    lang: str = "zh-CN",
    link: str | None = None,
    kind: NotifyKind | None = None,
    names: Mapping[str, str] | None = None,
) -> AlertPayload:
    """Build the webhook payload of a fired (or resolved) alert; `message` is plain text."""
    if state.episode < 1 or state.started_at is None or state.window is None:
        raise ValueError("alert state has no fired episode")
    status: Literal["firing", "resolved"] = "firing" if state.status == "firing" else "resolved"
    payload = AlertPayload(
        alert_id=state.alert_id,
        status=status,
        specialist_id=state.specialist_id,
        team_id=team_id,
        kpi=state.kpi,
        window=state.window,
        value=state.value,
        qualified=state.qualified,
        grade=state.grade,
        samples=state.samples,
        started_at=state.started_at,
        resolved_at=state.resolved_at if status == "resolved" else None,
        message="",
    )
    text = render_text(payload, lang, link, kind=kind, names=names)
    return payload.model_copy(update={"message": text})


def make_incident_payload(
    incident: Incident, status: Announced, *, lang: str = "zh-CN", link: str | None = None
) -> IncidentPayload:
    """Build the notice of an incident that opened (`firing`) or cleared (`resolved`)."""
    payload = IncidentPayload(
        incident_id=incident.id,
        status=status,
        kind=incident.kind,
        service=incident.service,
        summary=incident.summary,
        detail=dict(incident.detail),
        opened_at=incident.opened_at,
        resolved_at=incident.resolved_at if status == "resolved" else None,
        occurrences=incident.occurrences,
        message="",
    )
    return payload.model_copy(update={"message": render_incident_text(payload, lang, link)})


def make_reminder_payload(
    reminder: Reminder,
    audience: Audience,
    *,
    name: str | None,
    lang: str = "zh-CN",
    link: str | None = None,
) -> ReminderPayload:
    """Build the notice of an appraisal-cycle reminder for its supervisor or the specialist."""
    payload = ReminderPayload(
        reminder_id=reminder.id,
        kind=reminder.kind,
        audience=audience,
        specialist_id=reminder.specialist_id,
        name=name,
        team_id=reminder.team_id,
        quarter=reminder.quarter,
        due=reminder.due,
        detail=dict(reminder.subject),
        created_at=reminder.created_at,
        message="",
    )
    return payload.model_copy(update={"message": render_reminder_text(payload, lang, link)})


def make_digest_payload(
    digest: Digest,
    open_alerts: list[DigestOpenAlert],
    open_alerts_total: int,
    *,
    lang: str = "zh-CN",
    link: str | None = None,
) -> DigestPayload:
    """Build the notice of a team digest: scoring's content plus the alerts open now."""
    payload = DigestPayload(
        **dict(digest.content),
        digest_id=digest.id,
        open_alerts=open_alerts,
        open_alerts_total=open_alerts_total,
        created_at=digest.created_at,
        message="",
    )
    return payload.model_copy(update={"message": render_digest_text(payload, lang, link)})


def _title(
    items: list[AlertPayload],
    lang: str,
    kinds: Mapping[str, NotifyKind] | None,
    names: Mapping[str, str] | None,
) -> str:
    if len(items) == 1:
        kind = kinds.get(items[0].alert_id) if kinds else None
        return render_title(items[0], lang, kind=kind, names=names)
    return render_group_title(items, lang, kinds=kinds)


def _text(
    items: list[AlertPayload],
    lang: str,
    link: str | None,
    fmt: Fmt,
    kinds: Mapping[str, NotifyKind] | None,
    names: Mapping[str, str] | None,
) -> str:
    if len(items) == 1:
        kind = kinds.get(items[0].alert_id) if kinds else None
        return render_text(items[0], lang, link, kind=kind, fmt=fmt, names=names)
    return render_group_text(items, lang, link, kinds=kinds, fmt=fmt, names=names)


@dataclass(frozen=True)
class Content:
    """One message rendered for every channel kind; the builders below only package it."""

    title: str
    text: Callable[[Fmt, str | None], str]  # (format, link) -> text, user data escaped
    body: Callable[[], bytes]  # the generic webhook body
    template: str  # Feishu card header colour


def alert_content(
    alerts: Alerts,
    lang: str,
    kinds: Mapping[str, NotifyKind] | None,
    names: Mapping[str, str] | None,
) -> Content:
    items = alert_list(alerts)
    return Content(
        title=_title(items, lang, kinds, names),
        text=lambda fmt, link: _text(items, lang, link, fmt, kinds, names),
        body=lambda: webhook_body(alerts),
        template=_feishu_template(items, kinds),
    )


def incident_content(incident: IncidentPayload, lang: str) -> Content:
    if incident.status == "resolved":
        template = "green"
    else:
        # Same colours as the dashboard banner: red when KPIs stopped, orange otherwise.
        template = "red" if incident.kind == STALL else "orange"
    return Content(
        title=render_incident_title(incident, lang),
        text=lambda fmt, link: render_incident_text(incident, lang, link, fmt=fmt),
        body=incident.to_json,
        template=template,
    )


def reminder_content(reminder: ReminderPayload, lang: str) -> Content:
    return Content(
        title=render_reminder_title(reminder, lang),
        text=lambda fmt, link: render_reminder_text(reminder, lang, link, fmt=fmt),
        body=reminder.to_json,
        # Overdue is late already; the others are heads-ups.
        template="orange" if reminder.kind == "plan_overdue" else "blue",
    )


def digest_content(digest: DigestPayload, lang: str) -> Content:
    return Content(
        title=render_digest_title(digest, lang),
        text=lambda fmt, link: render_digest_text(digest, lang, link, fmt=fmt),
        body=digest.to_json,
        # Someone fell below a line: worth a look; otherwise a routine report.
        template="orange" if any(c.direction == "fell_below" for c in digest.crossed) else "blue",
    )


def _feishu_template(items: list[AlertPayload], kinds: Mapping[str, NotifyKind] | None) -> str:
    firing = [a for a in items if (kinds or {}).get(a.alert_id, a.status) != "resolved"]
    return "red" if firing else "green"
