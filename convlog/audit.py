"""Audit of the event log: replay a session to any point, and verify its hash chain.

``replay`` folds the events oldest-first up to a seq or a moment and returns them with
the items as they stood then. ``verify_session`` walks the raw items of a session and
checks the seq sequence and the hash chain, naming the first broken link; with TTL, a
prefix of expired events (deleted by DynamoDB or not yet) is reported as expired, not as
tampering.

Example:
    ```python
    from convlog.audit import replay, verify_session
    from eventstore.log import EventLog

    log = EventLog(boto3.client("dynamodb"), "agent_sessions")
    state = await replay(log, "user-123", at_seq=4)
    report = await verify_session(log, "user-123")
    assert report.ok, report.problem
    ```
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from eventstore.errors import CorruptEventError, InvalidInputError
from eventstore.events import (
    JsonItem,
    chain_hash,
    event_body,
    parse_event,
    payload_data,
    payload_digest,
)
from eventstore.fold import fold_forward
from eventstore.history import branch_base
from eventstore.keys import EVENT_PREFIX, SESSION_PREFIX
from eventstore.log import EventLog
from eventstore.records import StoredEvent

from .verify import (
    Problem,
    ProblemKind,
    SessionVerifier,
    VerifyReport,
    verify_items,
    verify_session,
)

__all__ = [
    "Problem", "ProblemKind", "ReplayResult", "SessionVerifier", "VerifyReport",
    "export_line", "import_line", "iter_session_ids", "parse_time", "replay",
    "verify_items", "verify_session",
]


@dataclass(frozen=True)
class ReplayResult:
    """The events of a session up to a point, and the items as they stood there."""

    session_id: str
    events: list[StoredEvent]
    items: list[JsonItem]
    at_seq: int
    """The last seq included (0 when no event is)."""


def parse_time(value: str) -> datetime:
    """Parse an ISO 8601 time (``Z`` or an offset; no offset means UTC).

    Raises:
        InvalidInputError: The text is not an ISO 8601 time.
    """
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInputError(
            f"{value!r} is not an ISO 8601 time (e.g. 2026-01-31T12:00:00Z)"
        ) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


async def replay(
    log: EventLog,
    session_id: str,
    at_seq: int | None = None,
    as_of: datetime | str | None = None,
) -> ReplayResult:
    """Return the events of a session up to a point and the items at that point.

    Args:
        log: The event log.
        session_id: The session.
        at_seq: Include events up to and including this seq.
        as_of: Include events written at or before this time (TTL is judged at it).

    Raises:
        InvalidInputError: Both ``at_seq`` and ``as_of`` given, or a negative seq.
    """
    moment = parse_time(as_of) if isinstance(as_of, str) else as_of
    events = [stored async for stored in iter_replay(log, session_id, at_seq, moment)]
    now = moment.timestamp() if moment is not None else time.time()
    start = None
    if events and events[0].event.type == "branch_created":  # a branch: its parent's prefix
        start = await branch_base(log, events[0], now)
    snapshot = fold_forward(events, start, now=now)
    return ReplayResult(session_id, events, snapshot.items(now), snapshot.seq)


async def iter_replay(
    log: EventLog,
    session_id: str,
    at_seq: int | None = None,
    as_of: datetime | str | None = None,
) -> AsyncIterator[StoredEvent]:
    """Yield the events ``replay`` would return, one at a time (constant memory).

    Raises:
        InvalidInputError: Both ``at_seq`` and ``as_of`` given, or a negative seq.
    """
    if at_seq is not None and as_of is not None:
        raise InvalidInputError("give at most one of at_seq and as_of")
    if at_seq is not None and at_seq < 0:
        raise InvalidInputError(f"at_seq must be >= 0, got {at_seq}")
    moment = parse_time(as_of) if isinstance(as_of, str) else as_of
    async for stored in log.iter_events(session_id, upto_seq=at_seq):
        if moment is not None and parse_time(stored.event.ts) > moment:
            return
        yield stored


def export_line(stored: StoredEvent) -> dict[str, Any]:
    """The ``jsonl`` export of one event: its body plus ``prev_hash``, ``hash``, ``ttl``."""
    line = event_body(stored.event)
    line.update(prev_hash=stored.prev_hash, hash=stored.hash)
    if stored.ttl is not None:
        line["ttl"] = stored.ttl
    return line


def import_line(line: dict[str, Any]) -> StoredEvent:
    """Rebuild a ``StoredEvent`` from one ``export_line`` record.

    Raises:
        CorruptEventError: The record is not a valid event or its hash does not match.
    """
    data = dict(line)
    try:
        prev_hash, digest = str(data.pop("prev_hash")), str(data.pop("hash"))
    except KeyError as exc:
        raise CorruptEventError(f"export line lacks {exc.args[0]!r}") from exc
    ttl = data.pop("ttl", None)
    event = parse_event(data)
    ttl_value = int(ttl) if ttl is not None else None
    if chain_hash(prev_hash, event, ttl_value) != digest:
        raise CorruptEventError(f"seq {event.seq}: the event does not match its hash")
    psha = payload_digest(payload_data(event)) if event.v >= 2 else None
    return StoredEvent(event, prev_hash, digest, ttl_value, psha)


async def iter_session_ids(log: EventLog) -> AsyncIterator[str]:
    """Yield the id of every session with events in the table (one paged ``Scan``)."""
    seen: set[str] = set()
    async for item in log.db.items(
        "scan",
        TableName=log.table_name,
        ProjectionExpression="pk",
        FilterExpression="begins_with(pk, :s) AND begins_with(sk, :e)",
        ExpressionAttributeValues={":s": {"S": SESSION_PREFIX}, ":e": {"S": EVENT_PREFIX}},
    ):
        session_id = item["pk"]["S"][len(SESSION_PREFIX) :]
        if session_id not in seen:
            seen.add(session_id)
            yield session_id
