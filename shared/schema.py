"""The schema fence: scoring writes only to the schema revision its code was written for.

A migration takes ``WRITE_FENCE_KEY`` exclusive for its whole transaction; every scoring
batch takes it shared before it claims its events and then reads ``alembic_version``. So a
batch of an older release either commits before a migration starts or sees the new
revision and writes nothing (``SchemaMoved``, retried until the process is replaced): a
rolling upgrade cannot leave an old process writing in the old way into the new schema.
"""

from __future__ import annotations

from functools import cache
from typing import Final

# Also the dedup claim lock: the generation switch takes it exclusive as well ("kpi_clm1").
WRITE_FENCE_KEY: Final = 0x6B70695F636C6D31


class SchemaMoved(RuntimeError):
    """The database is at another schema revision than this release's code expects."""

    def __init__(self, found: str | None, expected: str) -> None:
        super().__init__(
            f"the database schema is at revision {found or 'none'}, this release expects "
            f"{expected}: stop this process and run the release that migrated the database "
            "(or run `kpi migrate` if this release is the newer one); nothing was written"
        )
        self.found = found
        self.expected = expected


@cache
def expected_revision() -> str:
    """The head revision of the migrations shipped with this code."""
    from alembic.script import ScriptDirectory

    from migrations import alembic_config

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the repository always ships migrations
        raise RuntimeError("no migration head found")
    return head


def check_revision(found: str | None) -> None:
    """SchemaMoved unless ``found`` (alembic_version) is this release's revision."""
    expected = expected_revision()
    if found != expected:
        raise SchemaMoved(found, expected)
