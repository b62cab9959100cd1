"""Localized (zh-CN / en) alert and platform-incident texts: plain, markdown, Slack mrkdwn, HTML."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, Literal, Protocol, TypeAlias

from services.notify.rules import NotifyKind, kpi_higher_is_better, kpi_unit
from shared.catalogue import CATALOGUE

Lang: TypeAlias = Literal["zh-CN", "en"]
Fmt: TypeAlias = Literal["plain", "markdown", "slack", "html"]

LANGS: Final[tuple[Lang, ...]] = ("zh-CN", "en")


class AlertLike(Protocol):
    """What rendering needs; `shared.webhooks.AlertPayload` satisfies it."""

    @property
    def alert_id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def specialist_id(self) -> str: ...
    @property
    def team_id(self) -> str | None: ...
    @property
    def kpi(self) -> str: ...
    @property
    def window(self) -> str: ...
    @property
    def value(self) -> float | None: ...
    @property
    def qualified(self) -> float | None: ...
    @property
    def grade(self) -> str | None: ...
    @property
    def samples(self) -> int | None: ...
    @property
    def started_at(self) -> datetime: ...
    @property
    def resolved_at(self) -> datetime | None: ...


_LABELS: Final[dict[Lang, dict[str, str]]] = {
    "zh-CN": {
        "specialist": "专员",
        "kpi": "指标",
        "window": "统计窗口",
        "value": "当前值",
        "qualified": "合格线",
        "samples": "样本数",
        "status": "状态",
        "started": "开始时间",
        "resolved": "恢复时间",
        "link": "详情",
        "open": "查看详情",
        "more": "…另有 {n} 条",
    },
    "en": {
        "specialist": "Specialist",
        "kpi": "KPI",
        "window": "Window",
        "value": "Value",
        "qualified": "Qualified line",
        "samples": "Samples",
        "status": "Status",
        "started": "Started",
        "resolved": "Resolved",
        "link": "Details",
        "open": "Open dashboard",
        "more": "… and {n} more",
    },
}

_TAGS: Final[dict[Lang, dict[NotifyKind, str]]] = {
    "zh-CN": {"firing": "[告警]", "reminder": "[提醒]", "resolved": "[已恢复]"},
    "en": {"firing": "[FIRING]", "reminder": "[REMINDER]", "resolved": "[RESOLVED]"},
}

_STATUS_WORDS: Final[dict[Lang, dict[NotifyKind, str]]] = {
    "zh-CN": {"firing": "告警中", "reminder": "仍未恢复（提醒）", "resolved": "已恢复"},
    "en": {"firing": "firing", "reminder": "still firing (reminder)", "resolved": "resolved"},
}

_NONE: Final = "—"


def normalize_lang(lang: str) -> Lang:
    """Map "zh", "zh_CN", "zh-cn", "zh-Hans" … to "zh-CN"; anything else to "en"."""
    return "zh-CN" if lang.strip().lower().startswith("zh") else "en"


def kpi_name(kpi: str, lang: str) -> str:
    """Display name of a KPI; unknown keys show as themselves."""
    known = CATALOGUE.get(kpi)
    return kpi if known is None else known.names[normalize_lang(lang)].name


def _trim(number: str) -> str:
    # "85.00" -> "85", "89.50" -> "89.5": short, yet 89.95 % is never rounded up to the line.
    return number.rstrip("0").rstrip(".") if "." in number else number


def format_value(kpi: str, value: float | None, lang: str) -> str:
    """Ratios as percent, hours with one decimal, counts as integers, scores with one decimal."""
    if value is None:
        return _NONE
    unit = kpi_unit(kpi)
    if unit == "ratio":
        return f"{_trim(f'{value * 100:.2f}')}%"
    if unit == "hours":
        return f"{value:.1f} 小时" if normalize_lang(lang) == "zh-CN" else f"{value:.1f} h"
    if unit == "count":
        return _trim(f"{value:.2f}")
    return f"{value:.1f}"


def format_line(kpi: str, qualified: float | None, lang: str) -> str:
    """The qualified line with its direction, e.g. "≥ 85%" or "≤ 24.0 h"."""
    if qualified is None:
        return _NONE
    op = "≥" if kpi_higher_is_better(kpi) else "≤"
    return f"{op} {format_value(kpi, qualified, lang)}"


def format_time(moment: datetime | None) -> str:
    """UTC minute precision; receivers span time zones, so state the zone explicitly."""
    if moment is None:
        return _NONE
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def kind_of(alert: AlertLike, kinds: Mapping[str, NotifyKind] | None = None) -> NotifyKind:
    """Notification kind of an alert: the explicit one from `kinds`, else its status."""
    if kinds is not None and alert.alert_id in kinds:
        return kinds[alert.alert_id]
    return "resolved" if alert.status == "resolved" else "firing"


def _who(alert: AlertLike, names: Mapping[str, str] | None) -> str:
    name = names.get(alert.specialist_id) if names else None
    return f"{name} ({alert.specialist_id})" if name else alert.specialist_id


_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def _clean(text: str) -> str:
    # User-supplied ids end up in subjects and one-line chat fields: no line breaks there.
    return _CONTROL.sub(" ", text)


def escape_markdown(text: str) -> str:
    """Neutralize markdown that user data could inject (emphasis, links, raw HTML)."""
    out = _clean(text)
    for ch in ("\\", "`", "*", "_", "[", "]"):
        out = out.replace(ch, "\\" + ch)
    return out.replace("<", "&lt;").replace(">", "&gt;")


def escape_slack(text: str) -> str:
    """Slack mrkdwn control characters, as Slack documents them."""
    return _clean(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_ESCAPERS: Final[dict[Fmt, Callable[[str], str]]] = {
    "plain": _clean,
    "markdown": escape_markdown,
    "slack": escape_slack,
    "html": lambda s: html.escape(_clean(s), quote=True),
}


def render_title(
    alert: AlertLike,
    lang: str,
    *,
    kind: NotifyKind | None = None,
    names: Mapping[str, str] | None = None,
) -> str:
    """One-line plain title (subjects, previews); `kind` overrides the alert's status."""
    lg = normalize_lang(lang)
    k: NotifyKind = kind or kind_of(alert)
    who = _clean(_who(alert, names))
    name = kpi_name(alert.kpi, lg)
    tag = _TAGS[lg][k]
    if lg == "zh-CN":
        verb = "已恢复至合格线以上" if k == "resolved" else "低于合格线"
        return f"{tag} {who} {name}{verb}"
    verb = "back above the qualified line" if k == "resolved" else "below the qualified line"
    return f"{tag} {who}: {name} {verb}"


def _rows(alert: AlertLike, lg: Lang, k: NotifyKind, who: str) -> list[tuple[str, str]]:
    lab = _LABELS[lg]
    rows = [
        (lab["specialist"], who),
        (lab["kpi"], f"{kpi_name(alert.kpi, lg)} ({alert.kpi})"),
        (lab["window"], alert.window),
        (lab["value"], format_value(alert.kpi, alert.value, lg)),
        (lab["qualified"], format_line(alert.kpi, alert.qualified, lg)),
        (lab["samples"], _NONE if alert.samples is None else str(alert.samples)),
        (lab["status"], _STATUS_WORDS[lg][k]),
        (lab["started"], format_time(alert.started_at)),
    ]
    if k == "resolved":
        rows.append((lab["resolved"], format_time(alert.resolved_at)))
    return rows


def _link(link: str | None, lg: Lang, fmt: Fmt) -> str | None:
    if not link:
        return None
    lab = _LABELS[lg]
    if fmt == "markdown":
        return f"[{lab['open']}]({link})"
    if fmt == "slack":
        return f"<{link}|{lab['open']}>"
    if fmt == "html":
        return f'<a href="{html.escape(link, quote=True)}">{html.escape(lab["open"])}</a>'
    return link


def _join(title: str, lines: list[str], lg: Lang, fmt: Fmt) -> str:
    if fmt == "markdown":
        # DingTalk/WeCom clients only break lines reliably on blank lines.
        return "\n\n".join([f"### {title}", *lines])
    if fmt == "slack":
        return "\n".join([f"*{title}*", *lines])
    if fmt == "html":
        return "\n".join([f"<h3>{title}</h3>", *lines])
    return "\n".join([title, *lines])


def _field(label: str, value: str, lg: Lang, fmt: Fmt) -> str:
    colon = "：" if lg == "zh-CN" else ": "
    if fmt == "markdown":
        return f"**{label}**{colon}{value}"
    if fmt == "slack":
        return f"*{label}*{colon}{value}"
    if fmt == "html":
        return f'<tr><th align="left">{html.escape(label)}</th><td>{value}</td></tr>'
    return f"{label}{colon}{value}"


def render_text(
    alert: AlertLike,
    lang: str,
    link: str | None,
    *,
    kind: NotifyKind | None = None,
    fmt: Fmt = "plain",
    names: Mapping[str, str] | None = None,
) -> str:
    """Full alert text; user data is escaped for `fmt`, so the result is safe to embed."""
    lg = normalize_lang(lang)
    k: NotifyKind = kind or kind_of(alert)
    title = render_title(alert, lg, kind=k, names=names)
    return render_card(title, _rows(alert, lg, k, _who(alert, names)), link, lg, fmt)


def render_card(
    title: str, rows: list[tuple[str, str]], link: str | None, lg: Lang, fmt: Fmt
) -> str:
    """Title, one labelled field per row and the link, with user data escaped for `fmt`."""
    esc = _ESCAPERS[fmt]
    fields = [_field(label, esc(val), lg, fmt) for label, val in rows]
    if fmt == "html":
        fields = ["<table>", *fields, "</table>"]
    link_text = _link(link, lg, fmt)
    if link_text is not None:
        if fmt == "html":
            fields.append(f"<p>{link_text}</p>")
        else:
            fields.append(_field(_LABELS[lg]["link"], link_text, lg, fmt))
    return _join(esc(title), fields, lg, fmt)


_KIND_ORDER: Final[dict[NotifyKind, int]] = {"firing": 0, "reminder": 1, "resolved": 2}


def sort_alerts(
    alerts: Sequence[AlertLike], kinds: Mapping[str, NotifyKind] | None = None
) -> list[AlertLike]:
    """Deterministic group order: firing, then reminders, then resolved; by specialist, KPI."""
    return sorted(
        alerts, key=lambda a: (_KIND_ORDER[kind_of(a, kinds)], a.specialist_id, a.kpi, a.alert_id)
    )


def _team_of(alerts: Sequence[AlertLike], team_id: str | None) -> str | None:
    if team_id is not None:
        return team_id
    teams = {a.team_id for a in alerts}
    return teams.pop() if len(teams) == 1 else None


def render_group_title(
    alerts: Sequence[AlertLike],
    lang: str,
    *,
    team_id: str | None = None,
    kinds: Mapping[str, NotifyKind] | None = None,
) -> str:
    """Plain title of a grouped message, e.g. "[KPI alerts] Team t1: 2 firing, 1 resolved"."""
    lg = normalize_lang(lang)
    resolved = sum(1 for a in alerts if kind_of(a, kinds) == "resolved")
    firing = len(alerts) - resolved
    team = _team_of(alerts, team_id)
    if lg == "zh-CN":
        parts = [
            p for n, p in ((firing, f"{firing} 条告警"), (resolved, f"{resolved} 条已恢复")) if n
        ]
        scope = f"团队 {_clean(team)}：" if team else ""
        return f"[KPI 告警] {scope}{'，'.join(parts) or '0 条'}"
    parts = [p for n, p in ((firing, f"{firing} firing"), (resolved, f"{resolved} resolved")) if n]
    scope = f"Team {_clean(team)}: " if team else ""
    return f"[KPI alerts] {scope}{', '.join(parts) or 'none'}"


def render_group_text(
    alerts: Sequence[AlertLike],
    lang: str,
    link: str | None,
    *,
    team_id: str | None = None,
    kinds: Mapping[str, NotifyKind] | None = None,
    fmt: Fmt = "plain",
    names: Mapping[str, str] | None = None,
    limit: int = 50,
) -> str:
    """Several alerts of one team in one message (cold start, storms), one line each.

    At most `limit` lines are listed, then a count of the rest, so chat size limits hold.
    """
    lg = normalize_lang(lang)
    esc = _ESCAPERS[fmt]
    lab = _LABELS[lg]
    title = esc(render_group_title(alerts, lg, team_id=team_id, kinds=kinds))
    ordered = sort_alerts(alerts, kinds)
    items: list[str] = []
    for a in ordered[: max(limit, 0)]:
        k = kind_of(a, kinds)
        colon, comma, lp, rp = (
            ("：", "，", "（", "）") if lg == "zh-CN" else (": ", ", ", " (", ")")
        )
        line = (
            f"{_TAGS[lg][k]} {_who(a, names)} · {kpi_name(a.kpi, lg)}{colon}"
            f"{format_value(a.kpi, a.value, lg)}"
            f"{lp}{lab['qualified']} {format_line(a.kpi, a.qualified, lg)}{comma}"
            f"{lab['samples']} {_NONE if a.samples is None else a.samples}{rp}"
        )
        items.append(esc(line))
    rest = len(ordered) - len(items)
    if rest > 0:
        items.append(esc(lab["more"].format(n=rest)))
    link_text = _link(link, lg, fmt)
    if fmt == "html":
        lines = ["<ul>", *(f"<li>{i}</li>" for i in items), "</ul>"]
        if link_text is not None:
            lines.append(f"<p>{link_text}</p>")
        return _join(title, lines, lg, fmt)
    bullet = "•" if fmt == "slack" else "-"
    lines = [f"{bullet} {i}" for i in items]
    if link_text is not None:
        lines.append(_field(lab["link"], link_text, lg, fmt))
    if fmt == "markdown":
        # A list must stay contiguous to render as one list; the link gets its own paragraph.
        body = "\n".join(lines[: len(items)])
        tail = lines[len(items) :]
        return "\n\n".join([f"### {title}", body, *tail])
    return _join(title, lines, lg, fmt)


# -- platform-health incidents ---------------------------------------------------------


class IncidentLike(Protocol):
    """What rendering an incident needs; `shared.webhooks.IncidentPayload` satisfies it."""

    @property
    def status(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def service(self) -> str: ...
    @property
    def summary(self) -> str: ...
    @property
    def detail(self) -> Mapping[str, Any]: ...
    @property
    def occurrences(self) -> int: ...
    @property
    def opened_at(self) -> datetime: ...
    @property
    def resolved_at(self) -> datetime | None: ...


INCIDENT_NAMES: Final[dict[Lang, dict[str, str]]] = {
    "zh-CN": {
        "stall": "KPI 统计停滞",
        "log_reset": "消息日志被重置",
        "offset_gap": "记录因保留期过期而丢失",
        "poison": "记录处理失败（已转入死信）",
    },
    "en": {
        "stall": "KPI pipeline stalled",
        "log_reset": "Broker log reset",
        "offset_gap": "Records lost to retention",
        "poison": "Records dead-lettered (processing failed)",
    },
}

_INCIDENT_LABELS: Final[dict[Lang, dict[str, str]]] = {
    "zh-CN": {
        "firing": "[平台告警]",
        "resolved": "[平台已恢复]",
        "incident": "问题类型",
        "service": "服务",
        "summary": "摘要",
        "open": "进行中",
        "closed": "已恢复",
        "occurrences": "发生次数",
        "impact": "影响",
        "impact_open": "在问题解决前，KPI 可能停止更新或不完整；看板顶部会显示提示横幅。",
        "impact_resolved": "已自动恢复，KPI 重新开始更新。",
        "detail": "技术细节",
    },
    "en": {
        "firing": "[PLATFORM]",
        "resolved": "[PLATFORM RESOLVED]",
        "incident": "Incident",
        "service": "Service",
        "summary": "Summary",
        "open": "open",
        "closed": "resolved",
        "occurrences": "Occurrences",
        "impact": "Impact",
        "impact_open": "KPIs may be stale or incomplete until this is resolved; "
        "the dashboard shows a banner.",
        "impact_resolved": "Cleared by itself; KPIs are updating again.",
        "detail": "Technical detail",
    },
}

# Chat messages stay readable: the full detail is in the webhook body and the API.
_DETAIL_MAX_CHARS: Final = 300


def incident_name(kind: str, lang: str) -> str:
    """Display name of an incident kind; unknown kinds show as themselves."""
    return INCIDENT_NAMES[normalize_lang(lang)].get(kind, kind)


def _detail_text(detail: Mapping[str, Any]) -> str:
    text = json.dumps(
        detail, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str
    )
    return text if len(text) <= _DETAIL_MAX_CHARS else text[: _DETAIL_MAX_CHARS - 1] + "…"


def render_incident_title(incident: IncidentLike, lang: str) -> str:
    """One-line plain title, e.g. "[PLATFORM] KPI pipeline stalled · scoring"."""
    lg = normalize_lang(lang)
    tag = _INCIDENT_LABELS[lg]["resolved" if incident.status == "resolved" else "firing"]
    return f"{tag} {incident_name(incident.kind, lg)} · {_clean(incident.service)}"


def render_incident_text(
    incident: IncidentLike, lang: str, link: str | None, *, fmt: Fmt = "plain"
) -> str:
    """Full text of an incident notice for admins; user data is escaped for `fmt`."""
    lg = normalize_lang(lang)
    lab, ilab = _LABELS[lg], _INCIDENT_LABELS[lg]
    resolved = incident.status == "resolved"
    rows = [
        (ilab["incident"], f"{incident_name(incident.kind, lg)} ({incident.kind})"),
        (ilab["service"], incident.service),
        (ilab["summary"], incident.summary),
        (lab["status"], ilab["closed" if resolved else "open"]),
        (ilab["occurrences"], str(incident.occurrences)),
        (lab["started"], format_time(incident.opened_at)),
    ]
    if resolved:
        rows.append((lab["resolved"], format_time(incident.resolved_at)))
    rows.append((ilab["impact"], ilab["impact_resolved" if resolved else "impact_open"]))
    if incident.detail:
        rows.append((ilab["detail"], _detail_text(incident.detail)))
    return render_card(render_incident_title(incident, lg), rows, link, lg, fmt)
