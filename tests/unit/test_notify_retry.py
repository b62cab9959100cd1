"""Retry decision of deliveries: a duration budget, capped full-jitter backoff, never past it."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.notify.retry import RetryPolicy, backoff_delay, next_attempt

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
S = timedelta(seconds=1)


def test_backoff_full_jitter() -> None:
    assert backoff_delay(0, 1.0, 60.0, lambda: 1.0) == 1.0
    assert backoff_delay(3, 1.0, 60.0, lambda: 1.0) == 8.0
    assert backoff_delay(3, 1.0, 60.0, lambda: 0.5) == 4.0
    assert backoff_delay(10, 1.0, 60.0, lambda: 1.0) == 60.0
    assert backoff_delay(10, 1.0, 60.0, lambda: 0.0) == 0.0
    assert backoff_delay(100_000, 0.5, 300.0, lambda: 0.25) == 75.0
    with pytest.raises(ValueError):
        backoff_delay(-1, 1.0, 60.0, lambda: 0.5)


def test_defaults_outlast_the_old_two_minutes() -> None:
    # The old budget (8 attempts from 1 s) gave up after at most 127 s of downtime.
    policy = RetryPolicy()
    assert policy.retry_for == timedelta(hours=24) and policy.cap == 300.0
    at = next_attempt(policy, budget_from=T0, attempts=8, now=T0 + 127 * S, rand=lambda: 1.0)
    assert at == T0 + 127 * S + 128 * S
    late = T0 + timedelta(hours=23, minutes=59)
    at = next_attempt(policy, budget_from=T0, attempts=500, now=late, rand=lambda: 1.0)
    assert at == T0 + timedelta(hours=24)  # cut to the deadline, not 300 s later
    assert next_attempt(policy, budget_from=T0, attempts=501, now=at, rand=lambda: 1.0) is None


def test_attempt_cap_is_an_extra_limit_only_when_set() -> None:
    capped = RetryPolicy(max_attempts=3)
    assert next_attempt(capped, budget_from=T0, attempts=2, now=T0, rand=lambda: 0.5) is not None
    assert next_attempt(capped, budget_from=T0, attempts=3, now=T0, rand=lambda: 0.5) is None
    unlimited = RetryPolicy()
    assert next_attempt(unlimited, budget_from=T0, attempts=10**6, now=T0, rand=lambda: 0.5)


def test_invalid_input_is_refused() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(retry_for=timedelta(0))
    with pytest.raises(ValueError):
        RetryPolicy(cap=0)
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=-1)
    with pytest.raises(ValueError, match="timezone-aware"):
        next_attempt(
            RetryPolicy(), budget_from=T0, attempts=1, now=datetime(2026, 3, 1), rand=float
        )
    with pytest.raises(ValueError, match="attempts"):
        next_attempt(RetryPolicy(), budget_from=T0, attempts=0, now=T0, rand=float)


def policies(max_seconds: int = 7 * 86400) -> st.SearchStrategy[RetryPolicy]:
    return st.builds(
        RetryPolicy,
        retry_for=st.integers(1, max_seconds).map(lambda n: n * S),
        base=st.floats(0.01, 30.0),
        cap=st.floats(0.05, 3600.0),
        max_attempts=st.just(0),
    )


offsets = st.integers(-10, 8 * 86400).map(lambda n: n * S)
randoms = st.floats(0.0, 1.0, exclude_max=True)


def reference(
    policy: RetryPolicy, budget_from: datetime, attempts: int, now: datetime, r: float
) -> datetime | None:
    """What the issue asks for, written as plainly as possible."""
    deadline = budget_from + policy.retry_for
    if now >= deadline:
        return None
    ceiling = min(policy.cap, policy.base * 2.0 ** min(attempts - 1, 1000))
    return min(now + timedelta(seconds=ceiling * r), deadline)


@given(policies(), offsets, st.integers(1, 5000), randoms)
def test_matches_the_reference(
    policy: RetryPolicy, offset: timedelta, attempts: int, r: float
) -> None:
    now = T0 + offset
    got = next_attempt(policy, budget_from=T0, attempts=attempts, now=now, rand=lambda: r)
    assert got == reference(policy, T0, attempts, now, r)


@given(policies(), offsets, st.integers(1, 5000), randoms)
def test_retry_bounds(policy: RetryPolicy, offset: timedelta, attempts: int, r: float) -> None:
    now = T0 + offset
    deadline = T0 + policy.retry_for
    got = next_attempt(policy, budget_from=T0, attempts=attempts, now=now, rand=lambda: r)
    if now < deadline:
        # Never given up before the budget is spent ...
        assert got is not None
        # ... never scheduled past it, never in the past, never more than the cap away.
        assert now <= got <= deadline
        assert (got - now).total_seconds() <= policy.cap + 1e-6
    else:
        # ... and never retried once it is.
        assert got is None


@given(
    policies(max_seconds=1200),
    st.floats(0.0, 1.0),
    st.lists(randoms, min_size=1, max_size=20),
    st.floats(0.2, 15.0),
)
def test_a_receiver_back_before_the_deadline_gets_the_message(
    policy: RetryPolicy, back_at: float, draws: list[float], send_seconds: float
) -> None:
    """Simulated outage until `back_at` (a fraction of the budget)."""
    deadline = T0 + policy.retry_for
    receiver_back = T0 + back_at * policy.retry_for
    rand = itertools.cycle(draws).__next__
    at, attempts, starts = T0, 0, []
    while True:
        starts.append(at)
        attempts += 1
        if at >= receiver_back:
            outcome = "sent"
            break
        now = at + timedelta(seconds=send_seconds)  # the failed attempt took this long
        following = next_attempt(policy, budget_from=T0, attempts=attempts, now=now, rand=rand)
        if following is None:
            outcome = "failed"
            assert now >= deadline
            break
        at = following
    # Every attempt starts inside the budget; giving up happens only after it.
    assert all(s <= deadline for s in starts)
    send = timedelta(seconds=send_seconds)
    if receiver_back + send <= deadline:
        assert outcome == "sent"
    elif receiver_back > deadline:
        assert outcome == "failed"
    elif outcome == "failed":
        # Back inside the budget but missed: the last attempt started before the receiver
        # was back and was still running when the budget ended.
        assert starts[-1] < receiver_back and starts[-1] + send >= deadline
