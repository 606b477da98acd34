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
from typing import Any, Literal

from eventstore.errors import CorruptEventError, InvalidInputError
from eventstore.events import (
    GENESIS_HASH,
    JsonItem,
    chain_hash,
    event_body,
    parse_event,
    payload_data,
    payload_digest,
)
from eventstore.fold import fold_forward
from eventstore.keys import (
    EVENT_PREFIX,
    SESSION_PREFIX,
    SNAPSHOT_SK,
    is_part_sk,
    seq_of,
    session_pk,
)
from eventstore.log import EventLog
from eventstore.records import AttrMap, StoredEvent, decode_event

ProblemKind = Literal["changed", "missing", "reordered", "corrupt"]


@dataclass(frozen=True)
class ReplayResult:
    """The events of a session up to a point, and the items as they stood there."""

    session_id: str
    events: list[StoredEvent]
    items: list[JsonItem]
    at_seq: int
    """The last seq included (0 when no event is)."""


@dataclass(frozen=True)
class Problem:
    """The first broken link found by ``verify_session``."""

    seq: int
    kind: ProblemKind
    message: str


@dataclass
class VerifyReport:
    """What ``verify_session`` found."""

    session_id: str
    events: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    expired_prefix: tuple[int, int] | None = None
    """Seqs ``(first, last)`` of the leading events that expired (TTL), if any."""
    problem: Problem | None = None

    @property
    def ok(self) -> bool:
        """Whether the chain is intact."""
        return self.problem is None


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
    if at_seq is not None and as_of is not None:
        raise InvalidInputError("give at most one of at_seq and as_of")
    if at_seq is not None and at_seq < 0:
        raise InvalidInputError(f"at_seq must be >= 0, got {at_seq}")
    moment = parse_time(as_of) if isinstance(as_of, str) else as_of
    events: list[StoredEvent] = []
    async for stored in log.iter_events(session_id, upto_seq=at_seq):
        if moment is not None and parse_time(stored.event.ts) > moment:
            break
        events.append(stored)
    now = moment.timestamp() if moment is not None else time.time()
    snapshot = fold_forward(events, now=now)
    return ReplayResult(session_id, events, snapshot.items(now), snapshot.seq)


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


def _raw_items(log: EventLog, session_id: str) -> AsyncIterator[AttrMap]:
    return log.db.items(
        "query",
        TableName=log.table_name,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": session_pk(session_id)}},
        ConsistentRead=True,
    )


async def verify_session(
    log: EventLog, session_id: str, *, now: float | None = None
) -> VerifyReport:
    """Walk the seq sequence and hash chain of a session; stop at the first broken link.

    Args:
        log: The event log.
        session_id: The session.
        now: Clock for TTL (epoch seconds); defaults to the current time.

    Returns:
        The report; ``report.ok`` is false and ``report.problem`` names the seq when a
        changed, missing or reordered event is found.
    """
    items = [item async for item in _raw_items(log, session_id)]
    return verify_items(session_id, items, now=now)


def verify_items(
    session_id: str, items: list[AttrMap], *, now: float | None = None
) -> VerifyReport:
    """Verify the raw items of one session partition, in key order (pure).

    Events are checked oldest first: the sort key's seq against the stored seq, no gap
    in the seq sequence, ``prev_hash`` equal to the previous event's ``hash``, and
    ``hash`` equal to ``sha256(prev_hash + canonical event)``. Missing or expired events
    before the first live one are an expired prefix when the events carry a ``ttl``.
    A snapshot that has applied a seq the log no longer holds means the newest events
    were removed.
    """
    at = time.time() if now is None else now
    report = VerifyReport(session_id)
    walk = _ChainWalk(report, at)
    heads: list[AttrMap] = []
    parts: dict[str, list[AttrMap]] = {}
    snapshot_seq: int | None = None
    snapshot_ttl: int | None = None
    for item in sorted(items, key=lambda i: str(i["sk"]["S"])):
        sk = item["sk"]["S"]
        if sk.startswith(EVENT_PREFIX):
            if is_part_sk(sk):
                parts.setdefault(sk.rsplit("#", 1)[0], []).append(item)
            else:
                heads.append(item)
        elif sk == SNAPSHOT_SK:
            snapshot_seq = int(item["seq"]["N"])
            snapshot_ttl = int(item["ttl"]["N"]) if "ttl" in item else None
    for head in heads:
        if not walk.step(head, parts.get(head["sk"]["S"], [])):
            return report
    if (
        snapshot_seq is not None
        and snapshot_seq > (report.last_seq or 0)
        and not (snapshot_ttl is not None and snapshot_ttl <= at)
    ):
        first = (report.last_seq or 0) + 1
        report.problem = Problem(
            first, "missing",
            f"seq {first}..{snapshot_seq} missing: the snapshot has applied seq "
            f"{snapshot_seq} but the log ends at seq {report.last_seq or 0}",
        )
    return report


class _ChainWalk:
    """State of the oldest-first walk in ``verify_session``."""

    def __init__(self, report: VerifyReport, now: float) -> None:
        self.report = report
        self.now = now
        self.prev: StoredEvent | None = None
        self.in_expired_prefix = True

    def fail(self, seq: int, kind: ProblemKind, message: str) -> bool:
        self.report.problem = Problem(seq, kind, message)
        return False

    def step(self, head: AttrMap, parts: list[AttrMap]) -> bool:
        report, sk_seq = self.report, seq_of(head["sk"]["S"])
        try:
            stored = decode_event(head, parts)
        except CorruptEventError as exc:
            return self.fail(sk_seq, "corrupt", f"seq {sk_seq} cannot be decoded: {exc}")
        event = stored.event
        if event.seq != sk_seq:
            return self.fail(
                sk_seq, "reordered",
                f"seq {sk_seq}: the item holds the event of seq {event.seq} (events moved)",
            )
        expected = self.prev.event.seq + 1 if self.prev else 1
        expired = stored.ttl is not None and stored.ttl <= self.now
        if event.seq != expected:
            gap = (expected, event.seq - 1)
            if not (self.in_expired_prefix and stored.ttl is not None):
                what = f"seq {gap[0]}" if gap[0] == gap[1] else f"seq {gap[0]}..{gap[1]}"
                return self.fail(
                    expected, "missing", f"{what} missing: the log jumps to seq {event.seq}"
                )
            low = report.expired_prefix[0] if report.expired_prefix else 1
            report.expired_prefix = (low, event.seq - 1)
        elif self.prev is not None and stored.prev_hash != self.prev.hash:
            return self.fail(
                event.seq, "reordered",
                f"seq {event.seq} does not link to seq {self.prev.event.seq} (prev_hash "
                "differs: an event was replaced, reordered or rewritten with a new hash)",
            )
        elif self.prev is None and stored.prev_hash != GENESIS_HASH:
            return self.fail(1, "reordered", "seq 1 does not start from the genesis hash")
        if self.prev is not None and event.v < self.prev.event.v:
            return self.fail(
                event.seq, "changed",
                f"seq {event.seq} was rewritten: hash schema {event.v} after schema "
                f"{self.prev.event.v}",
            )
        if (
            stored.payload_sha256 is not None
            and payload_digest(payload_data(event)) != stored.payload_sha256
        ):
            return self.fail(
                event.seq, "changed",
                f"seq {event.seq} was changed: its content does not match its hash",
            )
        if chain_hash(stored.prev_hash, event, stored.ttl,
                      payload_sha256=stored.payload_sha256) != stored.hash:
            return self.fail(
                event.seq, "changed",
                f"seq {event.seq} was changed: its content"
                f"{', ttl' if event.v >= 2 else ''} does not match its hash",
            )
        if expired and self.in_expired_prefix:
            low = report.expired_prefix[0] if report.expired_prefix else event.seq
            report.expired_prefix = (low, event.seq)
        elif not expired:
            self.in_expired_prefix = False
        report.events += 1
        report.first_seq = report.first_seq or event.seq
        report.last_seq = event.seq
        self.prev = stored
        return True


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
