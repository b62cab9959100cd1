"""Training-session state: every attendee's feedback on one session, in any order."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.scoring.kpi.codec import load_session, session_document, ts_for_orjson
from services.scoring.kpi.marks import Feedback, iso
from shared.events import Event, SurveyTraining


@dataclass
class TrainingSession:
    """All feedback received for one training session."""

    session_id: str
    feedback: list[Feedback] = field(default_factory=list)

    def apply(self, event: Event) -> bool:
        """Fold a ``survey.training`` event in; False when its event_id is already known."""
        if not isinstance(event, SurveyTraining) or event.session_id != self.session_id:
            raise ValueError(
                f"event {event.event_id} ({event.type}) does not update session {self.session_id}"
            )
        if any(f.event_id == event.event_id for f in self.feedback):
            return False
        self.feedback.append(
            Feedback(
                event.event_id,
                event.occurred_at,
                event.specialist_id,
                event.session_at,
                event.score,
            )
        )
        return True

    def to_json(self) -> dict[str, Any]:
        return session_document(self, iso)

    def to_storable(self) -> dict[str, Any]:
        """:meth:`to_json` with timestamps that ``orjson.dumps`` renders to the same bytes."""
        return session_document(self, ts_for_orjson)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrainingSession:
        return load_session(cls(""), data)

    def mean_score(self) -> float | None:
        if not self.feedback:
            return None
        return sum(f.score for f in self.feedback) / len(self.feedback)
