"""Localized (zh-CN / en) team digest texts, in the alert texts' card layout."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Protocol

# The card layout, labels and escaping of every notice (one look for alerts, incidents,
# reminders and digests); these names are the messages module's internals, shared on purpose.
from services.notify.messages import (
    _NONE,
    Fmt,
    Lang,
    _clean,
    format_line,
    format_value,
    kpi_name,
    normalize_lang,
    render_card,
)
from services.notify.rules import kpi_unit
from shared.webhooks import (
    DigestCrossing,
    DigestKpi,
    DigestOpenAlert,
    DigestPeriod,
    DigestPlan,
)

# Names and ids are cut to this many characters: a chat line stays a line.
NAME_MAX: Final = 40
# Items listed per section before "… and N more", so chat robots' size limits hold.
LIST_MAX: Final = 10

_TAGS: Final[dict[Lang, dict[str, str]]] = {
    "zh-CN": {"week": "[团队周报]", "month": "[团队月报]"},
    "en": {"week": "[WEEKLY DIGEST]", "month": "[MONTHLY DIGEST]"},
}

_DIGEST_LABELS: Final[dict[Lang, dict[str, str]]] = {
    "zh-CN": {
        "team": "团队",
        "period": "统计周期",
        "versus": "对比上期",
        "members": "成员数",
        "crossed": "越过合格线",
        "plans": "到期的改进计划",
        "alerts": "未关闭的告警",
        "none": "无",
        "fell_below": "跌破合格线",
        "recovered": "恢复至合格线",
        "prev": "上期",
        "samples": "样本 {n}",
        "overdue": "已逾期",
        "due": "{d} 到期",
        "more": "…另有 {n} 项",
        "pt": "个百分点",
    },
    "en": {
        "team": "Team",
        "period": "Period",
        "versus": "Compared with",
        "members": "Members",
        "crossed": "Crossed the qualified line",
        "plans": "Improvement plans due",
        "alerts": "Open alerts",
        "none": "none",
        "fell_below": "fell below the line",
        "recovered": "back at the line",
        "prev": "prev",
        "samples": "{n} samples",
        "overdue": "overdue",
        "due": "due {d}",
        "more": "… and {n} more",
        "pt": "pt",
    },
}


class DigestLike(Protocol):
    """What rendering a digest needs; `shared.webhooks.DigestPayload` satisfies it."""

    @property
    def team_id(self) -> str: ...
    @property
    def team_name(self) -> str | None: ...
    @property
    def period(self) -> DigestPeriod: ...
    @property
    def previous(self) -> DigestPeriod: ...
    @property
    def members(self) -> int: ...
    @property
    def kpis(self) -> Sequence[DigestKpi]: ...
    @property
    def crossed(self) -> Sequence[DigestCrossing]: ...
    @property
    def plans_due(self) -> Sequence[DigestPlan]: ...
    @property
    def open_alerts(self) -> Sequence[DigestOpenAlert]: ...
    @property
    def open_alerts_total(self) -> int: ...


def cut(text: str, limit: int = NAME_MAX) -> str:
    """One line of at most ``limit`` characters: control characters become spaces, a longer
    text ends in "…"."""
    flat = " ".join(_clean(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _who(specialist_id: str, name: str | None) -> str:
    sid = cut(specialist_id)
    return f"{cut(name)} ({sid})" if name else sid


def _team(digest: DigestLike) -> str:
    return _who(digest.team_id, digest.team_name)


def _span(period: DigestPeriod) -> str:
    return f"{period.name} ({period.start.isoformat()} – {period.end.isoformat()})"


def format_change(kpi: str, change: float | None, lang: str) -> str:
    """A signed difference in the KPI's unit: percentage points for ratios, hours, counts."""
    lg = normalize_lang(lang)
    if change is None:
        return _NONE
    unit = kpi_unit(kpi)
    if unit == "ratio":
        return f"{change * 100:+.1f} {_DIGEST_LABELS[lg]['pt']}"
    if unit == "hours":
        return f"{change:+.1f} 小时" if lg == "zh-CN" else f"{change:+.1f} h"
    if unit == "count":
        return f"{change:+g}"
    return f"{change:+.1f}"


def _kpi_line(row: DigestKpi, lg: Lang) -> str:
    dl = _DIGEST_LABELS[lg]
    now = format_value(row.kpi, row.value, lg)
    before = format_value(row.kpi, row.previous_value, lg)
    change = format_change(row.kpi, row.change, lg)
    samples = "" if row.samples is None else dl["samples"].format(n=row.samples)
    if lg == "zh-CN":
        tail = f"，{samples}" if samples else ""
        return f"{now}（{dl['prev']} {before}，{change}）{tail}"
    tail = f", {samples}" if samples else ""
    return f"{now} ({dl['prev']} {before}, {change}){tail}"


def _listed(items: Sequence[str], lg: Lang, total: int | None = None) -> str:
    dl = _DIGEST_LABELS[lg]
    if not items:
        return dl["none"]
    shown = list(items[:LIST_MAX])
    rest = (len(items) if total is None else total) - len(shown)
    if rest > 0:
        shown.append(dl["more"].format(n=rest))
    return ("；" if lg == "zh-CN" else "; ").join(shown)


def _crossed(c: DigestCrossing, lg: Lang) -> str:
    dl = _DIGEST_LABELS[lg]
    move = f"{format_value(c.kpi, c.previous_value, lg)} → {format_value(c.kpi, c.value, lg)}"
    sep = "：" if lg == "zh-CN" else ": "
    return f"{_who(c.specialist_id, c.name)} · {kpi_name(c.kpi, lg)} {dl[c.direction]}{sep}{move}"


def _plan(p: DigestPlan, lg: Lang) -> str:
    dl = _DIGEST_LABELS[lg]
    goals = ", ".join(
        f"{kpi_name(g.kpi, lg)} {format_line(g.kpi, g.target, lg)} "
        + (
            f"({dl['overdue']}, {g.due.isoformat()})"
            if g.overdue
            else f"({dl['due'].format(d=g.due.isoformat())})"
        )
        for g in p.goals
    )
    return f"{_who(p.specialist_id, p.name)} {cut(p.quarter, 16)}: {goals}"


def _alert(a: DigestOpenAlert, lg: Lang) -> str:
    value = format_value(a.kpi, a.value, lg)
    line = format_line(a.kpi, a.qualified, lg)
    return f"{_who(a.specialist_id, a.name)} · {kpi_name(a.kpi, lg)} {value} ({line})"


def render_digest_title(digest: DigestLike, lang: str) -> str:
    """One-line plain title, e.g. "[WEEKLY DIGEST] North (north) · 2026-W49"."""
    lg = normalize_lang(lang)
    tag = _TAGS[lg].get(digest.period.kind, "[DIGEST]")
    return f"{tag} {_team(digest)} · {cut(digest.period.name, 16)}"


def render_digest_text(
    digest: DigestLike, lang: str, link: str | None, *, fmt: Fmt = "plain"
) -> str:
    """Full text of a team digest; user data is escaped for `fmt`."""
    lg = normalize_lang(lang)
    dl = _DIGEST_LABELS[lg]
    rows: list[tuple[str, str]] = [
        (dl["team"], _team(digest)),
        (dl["period"], _span(digest.period)),
        (dl["versus"], _span(digest.previous)),
        (dl["members"], str(digest.members)),
    ]
    rows += [(kpi_name(k.kpi, lg), _kpi_line(k, lg)) for k in digest.kpis]
    rows.append((dl["crossed"], _listed([_crossed(c, lg) for c in digest.crossed], lg)))
    rows.append((dl["plans"], _listed([_plan(p, lg) for p in digest.plans_due], lg)))
    alerts = [_alert(a, lg) for a in digest.open_alerts]
    rows.append((dl["alerts"], _listed(alerts, lg, max(digest.open_alerts_total, len(alerts)))))
    return render_card(render_digest_title(digest, lg), rows, link, lg, fmt)
