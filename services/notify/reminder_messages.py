"""Localized (zh-CN / en) appraisal-cycle reminder texts, in the alert texts' card layout."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Protocol

# The card layout, labels and escaping of every notice (one look for alerts, incidents and
# reminders); these names are the messages module's internals, shared on purpose.
from services.notify.messages import (
    _LABELS,
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

_REMINDER_TAGS: Final[dict[Lang, dict[str, str]]] = {
    "zh-CN": {
        "meeting_not_held": "[面谈提醒]",
        "goal_due": "[目标提醒]",
        "plan_overdue": "[计划逾期]",
    },
    "en": {
        "meeting_not_held": "[MEETING REMINDER]",
        "goal_due": "[GOAL REMINDER]",
        "plan_overdue": "[PLAN OVERDUE]",
    },
}

_REMINDER_LABELS: Final[dict[Lang, dict[str, str]]] = {
    "zh-CN": {
        "quarter": "考核季度",
        "plan_quarter": "计划季度",
        "finalized": "定稿日期",
        "meeting": "面谈状态",
        "meeting_due": "应于此日前面谈",
        "due": "到期日",
        "last_due": "最后到期日",
        "plan_status": "计划状态",
        "goals": "目标",
        "next": "下一步",
        "days_ago": "{n} 天前",
        "days_left": "还剩 {n} 天",
        "due_today": "今天到期",
        "days_overdue": "已逾期 {n} 天",
        "now": "当前",
    },
    "en": {
        "quarter": "Appraisal quarter",
        "plan_quarter": "Plan quarter",
        "finalized": "Finalised on",
        "meeting": "Meeting",
        "meeting_due": "Meeting due by",
        "due": "Due",
        "last_due": "Last due date",
        "plan_status": "Plan status",
        "goals": "Goals",
        "next": "Next step",
        "days_ago": "{n} days ago",
        "days_left": "{n} days left",
        "due_today": "due today",
        "days_overdue": "{n} days overdue",
        "now": "now",
    },
}

_MEETING_WORDS: Final[dict[Lang, dict[str, str]]] = {
    "zh-CN": {"none": "未安排", "scheduled": "已安排，尚未进行", "cancelled": "已取消"},
    "en": {
        "none": "not scheduled",
        "scheduled": "scheduled, not held yet",
        "cancelled": "cancelled",
    },
}

_PLAN_WORDS: Final[dict[Lang, dict[str, str]]] = {
    "zh-CN": {"draft": "草稿", "open": "进行中", "on_track": "按计划推进"},
    "en": {"draft": "draft", "open": "open", "on_track": "on track"},
}

_GOAL_WORDS: Final[dict[Lang, dict[str, str]]] = {
    "zh-CN": {
        "achieved": "已达成",
        "on_track": "进展良好",
        "behind": "落后",
        "missed": "未达成",
        "insufficient_data": "数据不足",
    },
    "en": {
        "achieved": "achieved",
        "on_track": "on track",
        "behind": "behind",
        "missed": "missed",
        "insufficient_data": "insufficient data",
    },
}

# What the reader is asked to do: per language, audience and kind.
_REMINDER_NEXT: Final[dict[Lang, dict[str, dict[str, str]]]] = {
    "zh-CN": {
        "supervisor": {
            "meeting_not_held": "请与专员进行反馈面谈，并在看板中记录面谈要点与约定行动。",
            "goal_due": "请与专员一起回顾目标进展。",
            "plan_overdue": "请回顾计划：标记为已达成或未达成，或调整目标的到期日。",
        },
        "specialist": {
            "meeting_not_held": "主管会与您约定面谈时间；如有疑问请联系主管。",
            "goal_due": "可在看板中查看进度并添加进展记录。",
            "plan_overdue": "请与主管一起回顾改进计划。",
        },
    },
    "en": {
        "supervisor": {
            "meeting_not_held": "Hold the feedback meeting with the specialist and record it "
            "(notes and agreed actions) in the dashboard.",
            "goal_due": "Review the goals' progress with the specialist.",
            "plan_overdue": "Review the plan: mark it achieved or missed, or move its goals' "
            "due dates.",
        },
        "specialist": {
            "meeting_not_held": "Your supervisor will arrange the meeting; ask them if in doubt.",
            "goal_due": "See your progress and add progress notes in the dashboard.",
            "plan_overdue": "Review the improvement plan with your supervisor.",
        },
    },
}


class ReminderLike(Protocol):
    """What rendering a reminder needs; `shared.webhooks.ReminderPayload` satisfies it."""

    @property
    def kind(self) -> str: ...
    @property
    def audience(self) -> str: ...
    @property
    def specialist_id(self) -> str: ...
    @property
    def name(self) -> str | None: ...
    @property
    def quarter(self) -> str: ...
    @property
    def due(self) -> Any: ...
    @property
    def detail(self) -> Mapping[str, Any]: ...


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _goals(reminder: ReminderLike) -> list[Mapping[str, Any]]:
    goals = reminder.detail.get("goals")
    return [g for g in goals if isinstance(g, Mapping)] if isinstance(goals, list) else []


def _goal_line(goal: Mapping[str, Any], lg: Lang, *, progress: bool) -> str:
    kpi = str(goal.get("kpi") or "")
    line = f"{kpi_name(kpi, lg) or _NONE} {format_line(kpi, _number(goal.get('target')), lg)}"
    if not progress:
        due = goal.get("due")
        if not due:
            return line
        return f"{line}（{due} 到期）" if lg == "zh-CN" else f"{line} (due {due})"
    status = _GOAL_WORDS[lg].get(str(goal.get("status")), "")
    now = f"{_REMINDER_LABELS[lg]['now']} {format_value(kpi, _number(goal.get('value')), lg)}"
    if lg == "zh-CN":
        return f"{line}（{now}{'，' + status if status else ''}）"
    return f"{line} ({now}{', ' + status if status else ''})"


def _who_reminded(reminder: ReminderLike) -> str:
    name = reminder.name
    return f"{name} ({reminder.specialist_id})" if name else reminder.specialist_id


def render_reminder_title(reminder: ReminderLike, lang: str) -> str:
    """One-line plain title, e.g. "[MEETING REMINDER] Li Wei (s-42): 2026Q3 feedback meeting
    not held yet"; a specialist's copy speaks to them."""
    lg = normalize_lang(lang)
    kind = reminder.kind
    tag = _REMINDER_TAGS[lg].get(kind, f"[{kind}]")
    q = _clean(reminder.quarter)
    n = len(_goals(reminder))
    due = reminder.due
    mine = reminder.audience == "specialist"
    who = _clean(_who_reminded(reminder))
    if lg == "zh-CN":
        if kind == "meeting_not_held":
            text = f"您 {q} 的反馈面谈尚未进行" if mine else f"{who} {q} 的反馈面谈尚未进行"
        elif kind == "goal_due":
            subject = "您的改进计划" if mine else f"{who} 的改进计划"
            text = f"{subject}（{q}）有 {n} 个目标将于 {due} 到期"
        else:
            text = f"您的改进计划（{q}）已逾期" if mine else f"{who} 的改进计划（{q}）已逾期"
        return f"{tag} {text}"
    if kind == "meeting_not_held":
        text = (
            f"Your {q} feedback meeting has not been held yet"
            if mine
            else f"{who}: {q} feedback meeting not held yet"
        )
    elif kind == "goal_due":
        goals = "goal" if n == 1 else "goals"
        text = (
            f"{n} {goals} of your improvement plan ({q}) due {due}"
            if mine
            else f"{who}: {n} improvement-plan {goals} ({q}) due {due}"
        )
    else:
        text = (
            f"Your improvement plan ({q}) is overdue"
            if mine
            else f"{who}: improvement plan {q} is overdue"
        )
    return f"{tag} {text}"


def render_reminder_text(
    reminder: ReminderLike, lang: str, link: str | None, *, fmt: Fmt = "plain"
) -> str:
    """Full text of a reminder; user data is escaped for `fmt`."""
    lg = normalize_lang(lang)
    lab, rlab = _LABELS[lg], _REMINDER_LABELS[lg]
    detail = reminder.detail
    kind = reminder.kind
    rows: list[tuple[str, str]] = [(lab["specialist"], _who_reminded(reminder))]
    if kind == "meeting_not_held":
        finalized = str(detail.get("finalized_on") or _NONE)
        ago = _int(detail.get("days_since_finalized"))
        if ago is not None:
            finalized += f" ({rlab['days_ago'].format(n=ago)})"
        status = str(detail.get("meeting_status") or "none")
        rows += [
            (rlab["quarter"], reminder.quarter),
            (rlab["finalized"], finalized),
            (rlab["meeting"], _MEETING_WORDS[lg].get(status, status)),
            (rlab["meeting_due"], str(reminder.due or _NONE)),
        ]
    else:
        plan_status = str(detail.get("plan_status") or "")
        due = str(reminder.due or _NONE)
        if kind == "goal_due":
            left = _int(detail.get("days_left"))
            if left is not None:
                due += f" ({rlab['due_today'] if left == 0 else rlab['days_left'].format(n=left)})"
        else:
            late = _int(detail.get("days_overdue"))
            if late is not None:
                due += f" ({rlab['days_overdue'].format(n=late)})"
        goals = "; ".join(_goal_line(g, lg, progress=kind == "goal_due") for g in _goals(reminder))
        rows += [
            (rlab["plan_quarter"], reminder.quarter),
            (rlab["due" if kind == "goal_due" else "last_due"], due),
            (rlab["plan_status"], _PLAN_WORDS[lg].get(plan_status, plan_status) or _NONE),
            (rlab["goals"], goals or _NONE),
        ]
    step = _REMINDER_NEXT[lg].get(reminder.audience, {}).get(kind)
    if step:
        rows.append((rlab["next"], step))
    return render_card(render_reminder_title(reminder, lg), rows, link, lg, fmt)
