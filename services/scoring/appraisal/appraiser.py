"""The appraiser: a quarter's appraisals from live sums, frozen snapshots and earlier quarters."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from services.scoring import queries
from services.scoring.api.deps import Ctx, ReadContext, now, scoring_config
from services.scoring.api.errors import bad_param
from services.scoring.appraisal import cycle_repository as cycle_repo
from services.scoring.appraisal import repository as repo
from services.scoring.appraisal.cycle import cycle_fields, is_provisional
from services.scoring.appraisal.domain import (
    AppraisalRule,
    Goal,
    IncentivePolicy,
    build_appraisal,
    diff_appraisals,
    goal_progress,
    measurement_window,
    overall_grade,
    previous_quarters,
    suggested_status,
)
from services.scoring.db import Db
from services.scoring.kpi.grading import evaluate_all
from services.scoring.kpi.windows import WindowError, parse_quarter, parse_window
from services.scoring.queries import SpecialistSums
from shared.catalogue import APPRAISED_KEYS

# The parts of an appraisal a snapshot freezes (identity and window are shown live).
COMPUTED = ("kpis", "overall_grade", "insufficient_data", "basis", "incentive", "calendar")


@dataclass(frozen=True)
class Appraiser:
    """Everything an appraisal needs: read context, rule, incentive policy, calendar name."""

    ctx: ReadContext
    rule: AppraisalRule
    policy: IncentivePolicy
    calendar: str
    now: dt.datetime

    def quarter(self, raw: str) -> str:
        try:
            year, q = parse_quarter(raw)
        except WindowError as exc:
            raise bad_param("path", "quarter", str(exc)) from None
        return f"{year:04d}Q{q}"

    async def appraise(
        self, db: Db, quarter: str, members: Sequence[SpecialistSums], *, cycle: bool = True
    ) -> list[dict[str, Any]]:
        """Appraisals of ``members`` (sums over ``quarter``): frozen where finalised, plus live;
        with ``cycle``, also the cycle's state (meeting, decision, acknowledgement, comment)."""
        window = parse_window(quarter, self.ctx.today)
        ids = [m.specialist.id for m in members]
        # At least one quarter back, so consecutive_excellent tells 1 from 2 and more.
        lookback = max(1, self.policy.promotion_after_consecutive_excellent - 1)
        earlier = previous_quarters(quarter, lookback)
        frozen = await repo.snapshots(db, [quarter, *earlier], ids)
        # The appraisal stays on the SPEC §1 KPIs: the §3a measures are not part of it.
        values = {
            m.specialist.id: evaluate_all(m.sums, window, self.ctx.lines, APPRAISED_KEYS)
            for m in members
        }
        history: dict[str, list[str | None]] = {i: [] for i in ids}
        # Only an excellent streak needs earlier quarters; walk back while it lasts.
        streaking = [
            i
            for i in ids
            if overall_grade({k: v.grade for k, v in values[i].items()}, self.rule).grade
            == "excellent"
        ]
        for before in earlier:
            if not streaking:
                break
            win = parse_window(before, self.ctx.today)
            need = [i for i in streaking if (before, i) not in frozen]
            sums = await queries.window_sums(db, need, win.start, win.end)
            for i in streaking:
                snap = frozen.get((before, i))
                if snap is not None:
                    grade = snap.body.get("overall_grade")
                else:
                    evaluated = evaluate_all(sums[i], win, self.ctx.lines, APPRAISED_KEYS)
                    grade = overall_grade(
                        {k: v.grade for k, v in evaluated.items()}, self.rule
                    ).grade
                history[i].append(grade)
            streaking = [i for i in streaking if history[i][-1] == "excellent"]
        out: list[dict[str, Any]] = []
        for m in members:
            sid = m.specialist.id
            live = build_appraisal(values[sid], self.rule, self.policy, history[sid], self.calendar)
            base = {
                "specialist_id": sid,
                "name": m.specialist.name,
                "team_id": m.specialist.team_id,
                "quarter": quarter,
                "window": self.ctx.window_out(window),
            }
            snap = frozen.get((quarter, sid))
            if snap is None:
                out.append(
                    {
                        **base,
                        **live,
                        "finalized": False,
                        "finalized_by": None,
                        "finalized_at": None,
                        "live": None,
                        "differs": False,
                        "differences": [],
                    }
                )
                continue
            differences = diff_appraisals(snap.body, live)
            out.append(
                {
                    **base,
                    **{k: snap.body.get(k) for k in COMPUTED},
                    "finalized": True,
                    "finalized_by": snap.finalized_by,
                    "finalized_at": snap.finalized_at,
                    "live": live,
                    "differs": bool(differences),
                    "differences": differences,
                }
            )
        if cycle:
            await self._add_cycle(db, quarter, window.end, out)
        return out

    async def _add_cycle(
        self, db: Db, quarter: str, end: dt.date, appraisals: list[dict[str, Any]]
    ) -> None:
        ids = [a["specialist_id"] for a in appraisals]
        meetings = await cycle_repo.quarter_meetings(db, quarter, ids)
        decisions = await cycle_repo.current_decisions(db, quarter, ids)
        responses = await cycle_repo.responses(db, quarter, ids)
        for a in appraisals:
            sid = a["specialist_id"]
            response = responses.get(sid)
            a.update(
                cycle_fields(
                    is_provisional(a["finalized"], self.ctx.today, end),
                    meetings.get(sid, ()),
                    decisions.get(sid),
                    None if response is None else response.acknowledged_at,
                    None if response is None else response.comment_json(),
                )
            )

    async def of(self, specialist_id: str, quarter: str) -> dict[str, Any] | None:
        """One specialist's appraisal (None when the directory does not have them)."""
        window = parse_window(quarter, self.ctx.today)
        found = await queries.specialist_sums(self.ctx.db, specialist_id, window.start, window.end)
        if found is None:
            return None
        (body,) = await self.appraise(self.ctx.db, quarter, [found])
        return body

    async def stream(
        self, db: Db, quarter: str, teams: Collection[str] | None
    ) -> AsyncIterator[dict[str, Any]]:
        window = parse_window(quarter, self.ctx.today)
        async for chunk in queries.iter_members(db, teams, window.start, window.end):
            for item in await self.appraise(db, quarter, chunk):
                yield item


async def appraiser(request: Request, ctx: Ctx) -> Appraiser:
    config = scoring_config(request)
    return Appraiser(
        ctx, config.appraisal_rule, config.incentives, config.measure.calendar, now(request)
    )


Appr = Annotated[Appraiser, Depends(appraiser)]


async def plans_out(appr: Appraiser, plans: Sequence[repo.PlanRow]) -> list[dict[str, Any]]:
    today = appr.ctx.today
    parsed = [(p, [Goal.from_json(g) for g in p.goals]) for p in plans]
    windows = {
        (p.specialist_id, g): measurement_window(p.quarter, g, today)
        for p, goals in parsed
        for g in goals
    }
    sums = await queries.many_window_sums(
        appr.ctx.db, {(sid, lo, hi) for (sid, _), (lo, hi) in windows.items()}
    )
    notes = await cycle_repo.progress_notes(
        appr.ctx.db, [(p.specialist_id, p.quarter) for p in plans]
    )
    out: list[dict[str, Any]] = []
    for plan, goals in parsed:
        progress = []
        for goal in goals:
            lo, hi = windows[(plan.specialist_id, goal)]
            num, den = sums[(plan.specialist_id, lo, hi)].get(goal.kpi, (0.0, 0))
            line = appr.ctx.lines[goal.kpi]
            progress.append(goal_progress(goal, num, den, line, today, (lo, hi)))
        out.append(
            {
                "specialist_id": plan.specialist_id,
                "quarter": plan.quarter,
                "status": plan.status,
                "goals": [p.to_json() for p in progress],
                "progress": {"suggested_status": suggested_status(progress), "as_of": today},
                "notes": plan.notes,
                "origin": plan.origin,
                "created_by": plan.created_by,
                "created_at": plan.created_at,
                "updated_by": plan.updated_by,
                "updated_at": plan.updated_at,
                "progress_notes": notes.get((plan.specialist_id, plan.quarter), []),
            }
        )
    return out


def freeze(appraised: Mapping[str, Any]) -> dict[str, Any]:
    """The snapshot body of a live appraisal: its identity, window and computed parts."""
    return {
        k: appraised[k]
        for k in ("specialist_id", "name", "team_id", "quarter", "window", *COMPUTED)
    }
