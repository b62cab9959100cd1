"""Poison isolation: tell a record's fault from the platform's, and find the guilty records.

A batch that fails because of the database, the broker or the network (down, reset,
serialization failure, deadlock, statement timeout) is retried as a whole, never
dead-lettered. Any other failure may be one record's fault: the batch is bisected, every
half that applies is committed in offset order, and a single record that still fails
(twice) is handed to ``quarantine`` (dead letter + offset past it), so the rest of the
partition goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, TypeVar

from shared.schema import SchemaMoved

logger = logging.getLogger(__name__)

T = TypeVar("T")

# SQLSTATE classes that describe the server or the session, never the data: connection
# exceptions (08), transaction rollback: serialization failure, deadlock (40), insufficient
# resources (53), operator intervention: query canceled by statement_timeout, admin
# shutdown (57), system errors (58), internal errors (XX).
_TRANSIENT_SQLSTATE_CLASSES: Final = frozenset({"08", "40", "53", "57", "58", "XX"})
# lock_not_available (lock_timeout), object_in_use.
_TRANSIENT_SQLSTATES: Final = frozenset({"55P03", "55006"})
# Exception class names (any module) that are about the connection, not the data.
_TRANSIENT_NAMES: Final = frozenset(
    {
        "InterfaceError",  # asyncpg/SQLAlchemy: connection closed, operation in progress
        "InternalClientError",
        "OperationalError",  # SQLAlchemy's mapping of connection-level failures
        "ConnectionDoesNotExistError",
        "TooManyConnectionsError",
        "CannotConnectNowError",
    }
)
# Broker errors that are about the message itself, not the broker.
_RECORD_KAFKA_ERRORS: Final = frozenset(
    {"MessageSizeTooLargeError", "RecordTooLargeError", "InvalidRecordError"}
)


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception, what it wraps (SQLAlchemy's ``orig``) and its causes, once each."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop()
        if item is None or any(item is s for s in seen):
            continue
        seen.append(item)
        orig = getattr(item, "orig", None)
        todo.extend([item.__cause__, item.__context__])
        if isinstance(orig, BaseException):
            todo.append(orig)
    return seen


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` says nothing about the records being processed: retry them all."""
    for item in _chain(exc):
        if isinstance(item, TimeoutError | ConnectionError | OSError | MemoryError):
            return True
        if isinstance(item, SchemaMoved):  # the process is out of date, not the records
            return True
        name = type(item).__name__
        if name in _TRANSIENT_NAMES:
            return True
        if getattr(item, "connection_invalidated", False):
            return True
        sqlstate = getattr(item, "sqlstate", None) or getattr(item, "pgcode", None)
        if isinstance(sqlstate, str) and len(sqlstate) == 5:
            return sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES or sqlstate in _TRANSIENT_SQLSTATES
        if type(item).__module__.startswith("aiokafka") and name not in _RECORD_KAFKA_ERRORS:
            return True
    return False


async def isolate(
    records: Sequence[T],
    apply: Callable[[Sequence[T]], Awaitable[object]],
    quarantine: Callable[[T, BaseException], Awaitable[None]],
    *,
    transient: Callable[[BaseException], bool] = is_transient,
) -> int:
    """Apply ``records`` (in order); isolate the ones that fail deterministically.

    ``apply`` must commit what it applied (offsets included) before returning, so a half
    that succeeds is never applied again and offsets stay contiguous: the left half is
    always done before the right one. Transient failures propagate to the caller's retry.
    Returns how many records were quarantined.
    """
    failure = await _attempt(records, apply, transient)
    if failure is None:
        return 0
    if len(records) == 1:
        # Once more on its own: a misclassified one-off must not cost a good record.
        failure = await _attempt(records, apply, transient)
        if failure is None:
            return 0
        logger.error(
            "record failed twice on its own, quarantining it: %s: %s",
            type(failure).__name__,
            str(failure)[:300],
        )
        await quarantine(records[0], failure)
        return 1
    logger.warning(
        "batch of %d failed (%s: %s); bisecting to isolate the record(s) at fault",
        len(records),
        type(failure).__name__,
        str(failure)[:200],
    )
    mid = len(records) // 2
    left = await isolate(records[:mid], apply, quarantine, transient=transient)
    return left + await isolate(records[mid:], apply, quarantine, transient=transient)


async def _attempt(
    records: Sequence[T],
    apply: Callable[[Sequence[T]], Awaitable[object]],
    transient: Callable[[BaseException], bool],
) -> Exception | None:
    """None when ``records`` applied; the failure when it may be theirs; raises otherwise."""
    try:
        await apply(records)
    except Exception as exc:
        if transient(exc):
            raise
        return exc
    return None
