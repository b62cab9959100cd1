"""Decision-table and property tests of the notify alert state machine."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from services.notify.rules import (
    ALERT_NAMESPACE,
    AlertState,
    Decision,
    NotifyKind,
    Observation,
    RuleConfig,
    ack,
    alert_id,
    decide,
    delivery_key,
    is_recovered,
)

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)

# (qualified, excellent, min_samples, higher_is_better) per KPI, SPEC §1.
LINES = {
    "customer_satisfaction": (0.85, 0.90, 10, True),
    "resolution_rate": (0.90, 0.95, 10, True),
    "avg_response_time_hours": (24.0, 12.0, 10, False),
}


def grade_of(kpi: str, value: float | None, samples: int) -> str | None:
    qualified, excellent, min_samples, higher = LINES[kpi]
    if value is None:
        return None
    if samples < min_samples:
        return "insufficient_data"
    if (value >= excellent) if higher else (value <= excellent):
        return "excellent"
    if (value >= qualified) if higher else (value <= qualified):
        return "qualified"
    return "unqualified"


def obs(
    value: float | None,
    at: datetime = T0,
    *,
    kpi: str = "resolution_rate",
    samples: int = 20,
    grade: str | bool | None = True,
    specialist: str = "s-001",
) -> Observation:
    """Observation graded like the scoring service would (grade=True), or forced."""
    qualified, excellent, min_samples, higher = LINES[kpi]
    g = grade_of(kpi, value, samples) if grade is True else grade
    assert g is None or isinstance(g, str)
    return Observation(
        specialist_id=specialist,
        kpi=kpi,
        window="30d",
        value=value,
        numerator=None if value is None else value * samples,
        denominator=samples,
        grade=g,
        qualified=qualified,
        excellent=excellent,
        min_samples=min_samples,
        higher_is_better=higher,
        observed_at=at,
    )


@dataclass
class Runner:
    """Feeds observations through `decide`, keeping state and the notifications."""

    cfg: RuleConfig = field(default_factory=RuleConfig)
    state: AlertState | None = None
    sent: list[tuple[NotifyKind, str]] | None = None

    def step(self, o: Observation, now: datetime | None = None, silenced: bool = False) -> Decision:
        d = decide(self.state, o, now or o.observed_at, self.cfg, silenced)
        self.state = d.state
        if self.sent is None:
            self.sent = []
        if d.notify is not None:
            self.sent.append((d.notify, d.state.alert_id))
        return d

    def kinds(self) -> list[NotifyKind]:
        return [k for k, _ in self.sent or []]


# ----------------------------------------------------------------------- decision table


def test_ok_observation_without_history_needs_no_write() -> None:
    d = decide(None, obs(0.95), T0, RuleConfig(), False)
    assert d == Decision(AlertState("s-001", "resolution_rate"), None, False)


def test_fire() -> None:
    d = decide(None, obs(0.85), T0, RuleConfig(), False)
    assert d.notify == "firing"
    assert d.changed
    s = d.state
    assert (s.status, s.episode, s.started_at, s.last_notified_at, s.seq) == (
        "firing",
        1,
        T0,
        T0,
        1,
    )
    assert (s.value, s.qualified, s.grade, s.samples, s.window) == (
        0.85,
        0.90,
        "unqualified",
        20,
        "30d",
    )
    assert s.alert_id == alert_id("s-001", "resolution_rate", 1)


def test_hold_sends_nothing_and_persists_only_value_changes() -> None:
    r = Runner()
    r.step(obs(0.85))
    d = r.step(obs(0.86, T0 + H))
    assert (d.notify, d.changed, d.state.status, d.state.value) == (None, True, "firing", 0.86)
    d = r.step(obs(0.86, T0 + 2 * H))
    assert (d.notify, d.changed) == (None, False)
    assert r.kinds() == ["firing"]


def test_repeat_only_after_interval() -> None:
    r = Runner(RuleConfig(repeat_interval=24 * H))
    r.step(obs(0.85))
    assert r.step(obs(0.85, T0 + 23 * H)).notify is None
    d = r.step(obs(0.85, T0 + 24 * H))
    assert d.notify == "reminder"
    assert (d.state.last_notified_at, d.state.seq, d.state.episode) == (T0 + 24 * H, 2, 1)
    assert r.step(obs(0.85, T0 + 47 * H)).notify is None
    assert r.step(obs(0.85, T0 + 48 * H)).notify == "reminder"
    assert r.kinds() == ["firing", "reminder", "reminder"]


def test_reminders_disabled_with_zero_interval() -> None:
    r = Runner(RuleConfig(repeat_interval=timedelta(0)))
    r.step(obs(0.85))
    assert r.step(obs(0.85, T0 + 1000 * H)).notify is None


def test_no_repeat_when_acked() -> None:
    r = Runner()
    r.step(obs(0.85))
    assert r.state is not None
    r.state = ack(r.state, T0 + H)
    assert r.state.acked_at == T0 + H
    assert r.step(obs(0.85, T0 + 72 * H)).notify is None
    # Acking does not hide the resolve.
    assert r.step(obs(0.95, T0 + 73 * H)).notify == "resolved"


def test_ack_is_idempotent_and_only_for_firing() -> None:
    ok = AlertState("s-001", "resolution_rate")
    assert ack(ok, T0) is ok
    firing = decide(None, obs(0.85), T0, RuleConfig(), False).state
    once = ack(firing, T0 + H)
    assert ack(once, T0 + 2 * H) is once


def test_resolve() -> None:
    r = Runner()
    r.step(obs(0.85))
    d = r.step(obs(0.93, T0 + H))
    assert d.notify == "resolved"
    assert (d.state.status, d.state.resolved_at, d.state.episode, d.state.seq) == (
        "ok",
        T0 + H,
        1,
        2,
    )
    assert d.state.value == 0.93
    assert r.sent == [
        ("firing", alert_id("s-001", "resolution_rate", 1)),
        ("resolved", alert_id("s-001", "resolution_rate", 1)),
    ]


def test_refire_starts_a_new_episode() -> None:
    r = Runner()
    r.step(obs(0.85))
    r.step(obs(0.93, T0 + H))
    d = r.step(obs(0.80, T0 + 2 * H))
    assert d.notify == "firing"
    assert (d.state.episode, d.state.started_at, d.state.seq, d.state.acked_at) == (
        2,
        T0 + 2 * H,
        1,
        None,
    )
    ids = [a for _, a in r.sent or []]
    assert ids[0] == ids[1] != ids[2] == alert_id("s-001", "resolution_rate", 2)


def test_silence_then_unsilence_sends_the_firing_then() -> None:
    r = Runner()
    d = r.step(obs(0.85), silenced=True)
    assert (d.notify, d.changed, d.state.status, d.state.owed) == (None, True, "firing", "firing")
    assert r.step(obs(0.85, T0 + H), silenced=True).notify is None
    # Silence over, same observation re-evaluated: the swallowed firing goes out now.
    d = r.step(obs(0.85, T0 + H), now=T0 + 2 * H)
    assert d.notify == "firing"
    assert (d.state.episode, d.state.started_at, d.state.last_notified_at) == (1, T0, T0 + 2 * H)
    assert d.state.owed is None
    assert r.kinds() == ["firing"]


def test_silenced_episode_that_resolves_is_never_announced() -> None:
    r = Runner()
    r.step(obs(0.85), silenced=True)
    d = r.step(obs(0.95, T0 + H), silenced=True)
    assert (d.notify, d.state.status, d.state.owed) == (None, "ok", None)
    assert r.step(obs(0.95, T0 + 2 * H)).notify is None
    assert r.kinds() == []
    # The next breach is a new episode, announced normally.
    d = r.step(obs(0.85, T0 + 3 * H))
    assert (d.notify, d.state.episode) == ("firing", 2)


def test_resolve_during_silence_is_sent_when_silence_ends() -> None:
    r = Runner()
    r.step(obs(0.85))
    d = r.step(obs(0.95, T0 + H), silenced=True)
    assert (d.notify, d.state.status, d.state.owed) == (None, "ok", "resolved")
    d = r.step(obs(0.95, T0 + H), now=T0 + 2 * H)
    assert d.notify == "resolved"
    assert r.kinds() == ["firing", "resolved"]


def test_silenced_resolve_then_refire_resumes_the_announced_episode() -> None:
    r = Runner()
    r.step(obs(0.85))
    r.step(obs(0.95, T0 + H), silenced=True)
    d = r.step(obs(0.80, T0 + 2 * H), silenced=True)
    # Receivers never saw the resolve, so for them episode 1 simply stayed open.
    assert (d.state.status, d.state.episode, d.state.started_at, d.state.owed) == (
        "firing",
        1,
        T0,
        None,
    )
    assert r.step(obs(0.80, T0 + 3 * H)).notify is None
    assert r.kinds() == ["firing"]


def test_no_reminders_while_silenced() -> None:
    r = Runner()
    r.step(obs(0.85))
    assert r.step(obs(0.85, T0 + 48 * H), silenced=True).notify is None
    assert r.step(obs(0.85, T0 + 49 * H)).notify == "reminder"


@pytest.mark.parametrize(
    "last",
    [
        pytest.param(obs(0.85, T0 + H, samples=5), id="insufficient_data"),
        pytest.param(obs(None, T0 + H, grade="unqualified"), id="value-none"),
        pytest.param(obs(0.85, T0 + H, grade=None), id="ungraded"),
        pytest.param(obs(0.85, T0 + H, samples=5, grade="unqualified"), id="below-min-samples"),
    ],
)
def test_no_longer_gradable_resolves(last: Observation) -> None:
    r = Runner()
    r.step(obs(0.85))
    d = r.step(last)
    assert (d.notify, d.state.status) == ("resolved", "ok")


def test_insufficient_data_never_fires() -> None:
    r = Runner()
    assert r.step(obs(0.10, samples=3)).notify is None
    assert r.step(obs(0.10, T0 + H, samples=3, grade="unqualified")).notify is None
    assert r.state is not None and r.state.status == "ok"


@pytest.mark.parametrize("kpi", ["nps", "training_sessions"])
def test_ungraded_kpis_never_alert(kpi: str) -> None:
    o = Observation("s-001", kpi, "30d", -40.0, -4, 10, None, None, None, None, True, T0)
    d = decide(None, o, T0, RuleConfig(), False)
    assert (d.notify, d.changed, d.state.status) == (None, False, "ok")


def test_pending_period() -> None:
    r = Runner(RuleConfig(pending_for=2 * H))
    d = r.step(obs(0.85))
    assert (d.notify, d.changed, d.state.status, d.state.pending_since) == (
        None,
        True,
        "pending",
        T0,
    )
    assert r.step(obs(0.84, T0 + H)).notify is None
    assert r.state is not None and r.state.status == "pending"
    d = r.step(obs(0.84, T0 + 2 * H))
    assert (d.notify, d.state.status, d.state.episode, d.state.started_at) == (
        "firing",
        "firing",
        1,
        T0 + 2 * H,
    )
    assert d.state.pending_since is None


def test_pending_fires_at_the_next_observation_after_the_period() -> None:
    r = Runner(RuleConfig(pending_for=2 * H))
    r.step(obs(0.85))
    assert r.step(obs(0.85, T0 + 5 * H)).notify == "firing"


def test_pending_that_recovers_goes_back_to_ok_silently() -> None:
    r = Runner(RuleConfig(pending_for=2 * H))
    r.step(obs(0.85))
    d = r.step(obs(0.91, T0 + H))
    assert (d.notify, d.changed, d.state.status, d.state.pending_since, d.state.episode) == (
        None,
        True,
        "ok",
        None,
        0,
    )
    # The period restarts with the next breach.
    r.step(obs(0.85, T0 + 2 * H))
    assert r.step(obs(0.85, T0 + 3 * H)).notify is None
    assert r.step(obs(0.85, T0 + 4 * H)).notify == "firing"
    assert r.kinds() == ["firing"]


def test_hysteresis_flapping_around_the_line_fires_once() -> None:
    r = Runner()
    values = [0.89, 0.91, 0.895, 0.92]
    got = [r.step(obs(v, T0 + i * H)).notify for i, v in enumerate(values)]
    assert got == ["firing", None, None, "resolved"]


def test_long_flapping_gives_exactly_one_firing() -> None:
    r = Runner()
    for i in range(200):
        r.step(obs(0.89 if i % 2 == 0 else 0.91, T0 + i * timedelta(minutes=5)))
    assert r.kinds() == ["firing"]
    r.step(obs(0.919, T0 + 17 * H))
    assert r.kinds() == ["firing"]
    r.step(obs(0.92, T0 + 18 * H))
    assert r.kinds() == ["firing", "resolved"]


def test_lower_is_better_hours_use_one_hour_margin() -> None:
    r = Runner()
    kpi = "avg_response_time_hours"
    steps = [(25.0, "firing"), (23.5, None), (24.0, None), (24.5, None), (23.0, "resolved")]
    for i, (value, expected) in enumerate(steps):
        assert r.step(obs(value, T0 + i * H, kpi=kpi)).notify == expected, value
    assert r.step(obs(24.5, T0 + 10 * H, kpi=kpi)).notify == "firing"
    assert r.state is not None and r.state.episode == 2


def test_custom_hysteresis() -> None:
    cfg = RuleConfig(ratio_hysteresis=0.05)
    firing = obs(0.80, kpi="customer_satisfaction")
    assert not is_recovered(obs(0.89, kpi="customer_satisfaction"), cfg)
    assert is_recovered(obs(0.90, kpi="customer_satisfaction"), cfg)
    assert not is_recovered(firing, cfg)


def test_stale_observation_is_ignored() -> None:
    r = Runner()
    r.step(obs(0.85, T0 + 2 * H))
    r.step(obs(0.95, T0 + 3 * H))
    # A replay of an older breach must not open a new episode.
    d = r.step(obs(0.85, T0 + H), now=T0 + 4 * H)
    assert (d.notify, d.changed, d.state.status) == (None, False, "ok")
    assert r.kinds() == ["firing", "resolved"]


def test_replaying_the_same_observation_adds_nothing() -> None:
    o = obs(0.85)
    first = decide(None, o, T0, RuleConfig(), False)
    again = decide(first.state, o, T0, RuleConfig(), False)
    assert (again.notify, again.changed, again.state) == (None, False, first.state)


def test_rejects_naive_times_and_foreign_state() -> None:
    with pytest.raises(ValueError):
        obs(0.85, datetime(2026, 1, 5, 9, 0))
    with pytest.raises(ValueError):
        decide(None, obs(0.85), datetime(2026, 1, 5, 9, 0), RuleConfig(), False)
    other = AlertState("s-002", "resolution_rate")
    with pytest.raises(ValueError):
        decide(other, obs(0.85), T0, RuleConfig(), False)


# ----------------------------------------------------------------------- ids and storage


def test_alert_id_is_deterministic_uuid5() -> None:
    a = alert_id("s-001", "resolution_rate", 1)
    assert a == alert_id("s-001", "resolution_rate", 1)
    assert a == str(uuid.uuid5(ALERT_NAMESPACE, '["s-001","resolution_rate",1]'))
    assert uuid.UUID(a).version == 5
    assert (
        len({a, alert_id("s-001", "resolution_rate", 2), alert_id("s-002", "resolution_rate", 1)})
        == 3
    )
    # Separator characters inside ids cannot make two different triples collide.
    assert alert_id("a:b", "c", 1) != alert_id("a", "b:c", 1)


def test_delivery_key_is_deterministic_and_distinct() -> None:
    a = alert_id("s-001", "resolution_rate", 1)
    k = delivery_key(a, "firing", "ch-1", 1)
    assert k == delivery_key(a, "firing", "ch-1", 1)
    others = {
        delivery_key(a, "resolved", "ch-1", 1),
        delivery_key(a, "firing", "ch-2", 1),
        delivery_key(a, "firing", "ch-1", 2),
        delivery_key(alert_id("s-001", "resolution_rate", 2), "firing", "ch-1", 1),
    }
    assert k not in others and len(others) == 4


def test_state_round_trips_through_json() -> None:
    r = Runner()
    r.step(obs(0.85))
    assert r.state is not None
    s = ack(r.state, T0 + H)
    data = orjson.loads(orjson.dumps(s.to_dict()))
    assert data["started_at"] == "2026-01-05T09:00:00+00:00"
    assert AlertState.from_dict(data) == s
    assert AlertState.from_dict({**data, "unknown_column": 1}) == s


# ----------------------------------------------------------------------- properties

VALUES = [None, 0.5, 0.85, 0.89, 0.895, 0.90, 0.91, 0.919, 0.92, 0.95, 1.0]

step_st = st.tuples(
    st.integers(min_value=0, max_value=30 * 60),  # minutes since previous step
    st.sampled_from(VALUES),
    st.sampled_from([20, 20, 20, 3]),  # samples; 3 < min → insufficient_data
    st.integers(min_value=0, max_value=3),  # 0 → toggle the silence (silences come in runs)
    st.integers(min_value=0, max_value=9),  # 0 → ack before the step
    st.booleans(),  # replay the step
)

cfg_st = st.builds(
    RuleConfig,
    repeat_interval=st.sampled_from([timedelta(0), H, 24 * H]),
    pending_for=st.sampled_from([timedelta(0), timedelta(minutes=30), 3 * H]),
)


Step = tuple[int, float | None, int, int, int, bool]


@settings(max_examples=1000, deadline=None)
@given(cfg=cfg_st, steps=st.lists(step_st, max_size=60))
# Announced firing, resolve and re-fire under silence, then silence ends.
@example(
    cfg=RuleConfig(),
    steps=[
        (0, 0.85, 20, 1, 1, False),
        (60, 0.95, 20, 0, 1, False),
        (60, 0.85, 20, 1, 1, False),
        (60, 0.85, 20, 0, 1, True),
    ],
)
def test_notifications_alternate_and_replays_add_nothing(
    cfg: RuleConfig, steps: list[Step]
) -> None:
    check_sequence(cfg, steps)


def check_sequence(cfg: RuleConfig, steps: list[Step]) -> None:
    """Drive `decide` through `steps` and check the notification invariants."""
    state: AlertState | None = None
    now = T0
    sent: list[tuple[NotifyKind, str, int]] = []
    silenced = False
    for minutes, value, samples, toggle, ack_roll, replay in steps:
        now += timedelta(minutes=minutes)
        silenced = silenced != (toggle == 0)
        if ack_roll == 0 and state is not None:
            state = ack(state, now)
        o = obs(value, now, samples=samples)
        d = decide(state, o, now, cfg, silenced)
        if silenced:
            assert d.notify is None
        else:
            # Nothing is left owed once receivers can be told.
            assert d.state.owed is None
        if d.notify is not None:
            sent.append((d.notify, d.state.alert_id, d.state.seq))
        if not d.changed:
            assert d.state == (state or d.state)
        state = d.state
        if replay:
            again = decide(state, o, now, cfg, silenced)
            assert (again.notify, again.changed, again.state) == (None, False, state)

    open_alert: str | None = None
    last_seq = 0
    for kind, aid, seq in sent:
        if kind == "firing":
            assert open_alert is None, "firing while another episode is open"
            open_alert, last_seq = aid, 0
        else:
            assert open_alert == aid, f"{kind} without its firing"
            if kind == "resolved":
                open_alert = None
        # Delivery keys stay unique within an episode.
        assert seq > last_seq
        last_seq = seq
    kinds = [k for k, _, _ in sent if k != "reminder"]
    assert kinds == ["firing", "resolved"] * (len(kinds) // 2) + ["firing"] * (len(kinds) % 2)


@settings(max_examples=100, deadline=None)
@given(steps=st.lists(st.sampled_from(VALUES[1:]), max_size=40))
def test_restart_from_persisted_state_never_renotifies(steps: list[float]) -> None:
    cfg = RuleConfig()
    state: AlertState | None = None
    now = T0
    for value in steps:
        now += timedelta(minutes=5)
        d = decide(state, obs(value, now), now, cfg, False)
        state = d.state if d.changed else state
    if state is None:
        return
    # A restart reloads the row and re-reads the latest observation: nothing to say.
    reloaded = AlertState.from_dict(orjson.loads(orjson.dumps(state.to_dict())))
    last = replace(obs(steps[-1], now), observed_at=now)
    d = decide(reloaded, last, now, cfg, False)
    assert d.notify is None
