"""Kafka topic names shared by every service (public interface, see SPEC §2 and §4)."""

from __future__ import annotations

TICKETS = "helpdesk.tickets"
SURVEYS = "helpdesk.surveys"
EVENTS = "kpi.events"
SCORES = "kpi.scores"
DEADLETTER = "kpi.deadletter"

ALL_TOPICS: tuple[str, ...] = (TICKETS, SURVEYS, EVENTS, SCORES, DEADLETTER)


class Topics:
    """Topic names with an optional prefix (``KPI_TOPIC_PREFIX``), so several
    installations or test runs can share one cluster without seeing each other."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.tickets = prefix + TICKETS
        self.surveys = prefix + SURVEYS
        self.events = prefix + EVENTS
        self.scores = prefix + SCORES
        self.deadletter = prefix + DEADLETTER

    @property
    def raw(self) -> tuple[str, str]:
        return (self.tickets, self.surveys)

    @property
    def all(self) -> tuple[str, ...]:
        return (self.tickets, self.surveys, self.events, self.scores, self.deadletter)

    def raw_for(self, base_topic: str) -> str:
        """Prefixed name of one of the base topic names above."""
        return self.prefix + base_topic

    def base_of(self, topic: str) -> str:
        """Unprefixed (public) name of a prefixed topic."""
        return topic[len(self.prefix) :] if self.prefix and topic.startswith(self.prefix) else topic
