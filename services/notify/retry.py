"""Pure retry policy of deliveries: when a failed send is tried again, and when to give up."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.notify.rules import require_aware


def backoff_delay(attempt: int, base: float, cap: float, rand: Callable[[], float]) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**attempt)).

    `attempt` counts failed attempts so far (0 for the first retry); `rand` returns [0, 1).
    """
    if attempt < 0 or base < 0 or cap < 0:
        raise ValueError("attempt, base and cap must be >= 0")
    # Clamp the exponent: 2**attempt overflows floats long before anyone waits that long.
    ceiling = min(cap, base * math.ldexp(1.0, min(attempt, 1000)))
    r = min(max(rand(), 0.0), 1.0)
    return ceiling * r


@dataclass(frozen=True)
class RetryPolicy:
    """How long a failing delivery is retried (`retry_for` from the start of its budget).

    The budget starts when the delivery is created and again when someone resends it.
    `max_attempts` 0 means the duration alone decides; a positive value also ends the
    budget after that many attempts.
    """

    retry_for: timedelta = timedelta(hours=24)
    base: float = 1.0
    cap: float = 300.0
    max_attempts: int = 0

    def __post_init__(self) -> None:
        if self.retry_for <= timedelta(0):
            raise ValueError("retry_for must be positive")
        if self.base <= 0 or self.cap <= 0:
            raise ValueError("base and cap must be positive")
        if self.max_attempts < 0:
            raise ValueError("max_attempts must be >= 0 (0 = no limit)")

    def deadline(self, budget_from: datetime) -> datetime:
        """The moment the budget that started at `budget_from` is spent."""
        require_aware("budget_from", budget_from)
        return budget_from + self.retry_for


def next_attempt(
    policy: RetryPolicy,
    *,
    budget_from: datetime,
    attempts: int,
    now: datetime,
    rand: Callable[[], float],
) -> datetime | None:
    """When to try again after the `attempts`-th failed attempt of this budget; None: give up.

    The retry is never scheduled past the deadline: a backoff that would end later is cut
    to the deadline itself, so a receiver that comes back just before it still gets the
    message, and nothing is tried once the deadline has passed.
    """
    require_aware("now", now)
    if attempts < 1:
        raise ValueError("attempts counts the failed attempts so far (>= 1)")
    deadline = policy.deadline(budget_from)
    if now >= deadline:
        return None
    if policy.max_attempts and attempts >= policy.max_attempts:
        return None
    delay = backoff_delay(attempts - 1, policy.base, policy.cap, rand)
    return min(now + timedelta(seconds=delay), deadline)
