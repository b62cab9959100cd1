"""The KPI catalogue (SPEC §1): each KPI's key, direction, unit, grading, default lines, names."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal, TypeAlias

# How a value reads: a share of 1 (shown as percent), hours, a count, or a score (NPS).
Unit: TypeAlias = Literal["ratio", "hours", "count", "score"]
Grade: TypeAlias = Literal["excellent", "qualified", "unqualified", "insufficient_data"]
GRADES: Final[tuple[Grade, ...]] = ("excellent", "qualified", "unqualified", "insufficient_data")
# Languages every display name exists in; alert texts, exports and the dashboard offer these.
LANGS: Final[tuple[str, ...]] = ("zh-CN", "en")

CUSTOMER_SATISFACTION: Final = "customer_satisfaction"
RESOLUTION_RATE: Final = "resolution_rate"
AVG_RESPONSE_TIME_HOURS: Final = "avg_response_time_hours"
RECORD_ACCURACY: Final = "record_accuracy"
FOLLOWUP_RATE: Final = "followup_rate"
COLLABORATION_SCORE: Final = "collaboration_score"
TRAINING_SESSIONS: Final = "training_sessions"
NPS: Final = "nps"
# SPEC §3a: informational measures shown beside the eight above, never appraised.
RESOLUTION_TIME_HOURS: Final = "resolution_time_hours"
FIRST_RESPONSE_SLA_RATE: Final = "first_response_sla_rate"
REOPEN_RATE: Final = "reopen_rate"


@dataclass(frozen=True)
class Names:
    """What one KPI is called in one language, from the longest to the shortest form."""

    name: str  # alert messages, where it stands alone
    label: str  # tables, charts, pickers and export columns
    short: str  # narrow column headers


@dataclass(frozen=True)
class KpiDefinition:
    """One row of the SPEC §1 table, or of the §3a informational measures."""

    key: str
    unit: Unit
    higher_is_better: bool
    # Graded by default: nps and the §3a measures are informational and have no default
    # lines; the §3a measures get a grade (and alerts) only when KPI_KPI_LINES sets lines.
    graded: bool
    # Default lines (None: the line does not exist); KPI_KPI_LINES overrides them.
    qualified: float | None
    excellent: float | None
    min_samples: int | None
    names: Mapping[str, Names]  # by language, one entry per LANGS
    # Part of the quarterly appraisal (SPEC §1: per-KPI grades, overall grade, incentives,
    # exports, plans); the §3a measures are shown everywhere else but never appraised.
    appraised: bool = True


def _names(en: Names, zh: Names) -> Mapping[str, Names]:
    return MappingProxyType({"zh-CN": zh, "en": en})


_TABLE: Final = (
    KpiDefinition(
        key=CUSTOMER_SATISFACTION,
        unit="ratio",
        higher_is_better=True,
        graded=True,
        qualified=0.85,
        excellent=0.90,
        min_samples=10,
        names=_names(
            en=Names("Customer satisfaction (CSAT)", "Customer satisfaction", "CSAT"),
            zh=Names("客户满意度", "客户满意度", "满意度"),
        ),
    ),
    KpiDefinition(
        key=RESOLUTION_RATE,
        unit="ratio",
        higher_is_better=True,
        graded=True,
        qualified=0.90,
        excellent=0.95,
        min_samples=10,
        names=_names(
            en=Names("Resolution rate", "Resolution rate", "Resolved"),
            zh=Names("问题解决率", "问题解决率", "解决率"),
        ),
    ),
    KpiDefinition(
        key=AVG_RESPONSE_TIME_HOURS,
        unit="hours",
        higher_is_better=False,
        graded=True,
        qualified=24.0,
        excellent=12.0,
        min_samples=10,
        names=_names(
            en=Names("Average response time", "Avg response time", "Response"),
            zh=Names("平均响应时间", "平均响应时间", "响应时间"),
        ),
    ),
    KpiDefinition(
        key=RECORD_ACCURACY,
        unit="ratio",
        higher_is_better=True,
        graded=True,
        qualified=0.95,
        excellent=0.98,
        min_samples=5,
        names=_names(
            en=Names("Service record accuracy", "Record accuracy", "Records"),
            zh=Names("服务记录准确率", "服务记录准确率", "记录准确率"),
        ),
    ),
    KpiDefinition(
        key=FOLLOWUP_RATE,
        unit="ratio",
        higher_is_better=True,
        graded=True,
        qualified=0.80,
        excellent=0.90,
        min_samples=10,
        names=_names(
            en=Names("Follow-up rate", "Follow-up rate", "Follow-up"),
            zh=Names("客户回访率", "客户回访率", "回访率"),
        ),
    ),
    KpiDefinition(
        key=COLLABORATION_SCORE,
        unit="ratio",
        higher_is_better=True,
        graded=True,
        qualified=0.80,
        excellent=0.90,
        min_samples=3,
        names=_names(
            en=Names("Collaboration score", "Collaboration", "Collab."),
            zh=Names("团队协作满意度", "团队协作满意度", "协作"),
        ),
    ),
    KpiDefinition(
        key=TRAINING_SESSIONS,
        unit="count",
        higher_is_better=True,
        graded=True,
        qualified=1.0,
        excellent=None,
        min_samples=None,
        names=_names(
            en=Names("Training & contribution", "Training sessions", "Training"),
            zh=Names("培训与贡献", "培训与贡献", "培训"),
        ),
    ),
    KpiDefinition(
        key=NPS,
        unit="score",
        higher_is_better=True,
        graded=False,
        qualified=None,
        excellent=None,
        min_samples=None,
        names=_names(
            en=Names("Net promoter score (NPS)", "NPS", "NPS"),
            zh=Names("净推荐值", "净推荐值", "NPS"),
        ),
    ),
    KpiDefinition(
        key=RESOLUTION_TIME_HOURS,
        unit="hours",
        higher_is_better=False,
        graded=False,
        qualified=None,
        excellent=None,
        min_samples=None,
        names=_names(
            en=Names("Average resolution time", "Avg resolution time", "Resolution"),
            zh=Names("平均解决时长", "平均解决时长", "解决时长"),
        ),
        appraised=False,
    ),
    KpiDefinition(
        key=FIRST_RESPONSE_SLA_RATE,
        unit="ratio",
        higher_is_better=True,
        graded=False,
        qualified=None,
        excellent=None,
        min_samples=None,
        names=_names(
            en=Names("First-response SLA rate", "First-response SLA", "SLA"),
            zh=Names("首次响应达标率", "首次响应达标率", "响应达标"),
        ),
        appraised=False,
    ),
    KpiDefinition(
        key=REOPEN_RATE,
        unit="ratio",
        higher_is_better=False,
        graded=False,
        qualified=None,
        excellent=None,
        min_samples=None,
        names=_names(
            en=Names("Reopen rate", "Reopen rate", "Reopened"),
            zh=Names("重开率", "重开率", "重开率"),
        ),
        appraised=False,
    ),
)

# In SPEC table order (§1, then §3a), the order of every KPI listing, column and message.
CATALOGUE: Final[Mapping[str, KpiDefinition]] = MappingProxyType({k.key: k for k in _TABLE})
KPI_KEYS: Final[tuple[str, ...]] = tuple(CATALOGUE)
# The quarterly appraisal's KPIs (SPEC §1), and those of them that are graded (the seven).
APPRAISED_KEYS: Final[tuple[str, ...]] = tuple(k.key for k in _TABLE if k.appraised)
GRADED_KEYS: Final[tuple[str, ...]] = tuple(k.key for k in _TABLE if k.graded and k.appraised)
# SPEC §3a: informational measures, graded only where KPI_KPI_LINES sets lines.
MEASURE_KEYS: Final[tuple[str, ...]] = tuple(k.key for k in _TABLE if not k.appraised)
RATIO_KEYS: Final[frozenset[str]] = frozenset(k.key for k in _TABLE if k.unit == "ratio")
