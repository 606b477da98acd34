"""The oldest-first walk of one session's hash chain (the table's own proof).

``ChainWalk.step`` takes one event head (with its parts, or its S3 payload) at a time and
checks its seq against the sort key and its predecessor, its ``prev_hash`` link, its hash
schema, its payload against its digest (unless erased) and its ``hash``; a leading run of
expired events (TTL) is recorded as the expired prefix, not as tampering. It fills the
``VerifyReport`` of ``convlog.verify`` and stops at the first broken link.

Example:
    ```python
    walk = ChainWalk(report, time.time())
    for head, parts in heads_in_order:
        if not walk.step(head, parts):
            break
    ```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from eventstore.errors import CorruptEventError, EventKeyError, PayloadStoreRequiredError
from eventstore.events import GENESIS_HASH, chain_hash, payload_data, payload_digest
from eventstore.keys import seq_of
from eventstore.records import AttrMap, StoredEvent, decode_event

from .purge_record import PurgeRecord

ProblemKind = Literal[
    "changed", "missing", "reordered", "corrupt", "truncated", "deleted", "rewritten",
    "erased",
]


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
    purged_through: int | None = None
    """The last seq erased by ``convlog purge``, when its tombstone is present."""
    problem: Problem | None = None
    anchored: tuple[int, int] | None = None
    """``(seq, digest number)`` of the newest anchored head the log matched, if any."""
    erased_by: PurgeRecord | None = None
    """The signed purge (``convlog.purge_record``) that erased the session up to its
    ``through``, when the anchored heads it excuses are gone."""
    erased_content: dict[int, PurgeRecord] = field(default_factory=dict)
    """The seqs whose content was erased, each with the signed erasure covering it."""

    @property
    def ok(self) -> bool:
        """Whether the chain is intact."""
        return self.problem is None


class ChainWalk:
    """State of the oldest-first walk in ``verify_session``.

    Example:
        ```python
        ok = ChainWalk(report, now).step(head, parts)
        ```
    """

    def __init__(self, report: VerifyReport, now: float) -> None:
        self.report = report
        self.now = now
        self.prev: StoredEvent | None = None
        self.in_expired_prefix = True
        # the first event's seq when the log starts after 1 without expired events: a
        # purge tombstone (it sorts after the events) may still prove the prefix erased
        self.unproven_start: int | None = None

    def fail(self, seq: int, kind: ProblemKind, message: str) -> bool:
        """Record the problem at ``seq``; ``False`` (stop walking)."""
        self.report.problem = Problem(seq, kind, message)
        return False

    def step(
        self, head: AttrMap, parts: list[AttrMap], payload: bytes | Exception | None = None
    ) -> bool:
        """Check the next event head; ``False`` once a link is broken."""
        report = self.report
        try:
            sk_seq = seq_of(head["sk"]["S"])
        except EventKeyError as exc:
            at = self.prev.event.seq + 1 if self.prev else 1
            return self.fail(at, "corrupt", f"{exc}: no writer makes such an item")
        try:
            if isinstance(payload, Exception):
                raise payload
            stored = decode_event(head, parts, raw=payload)
        except (CorruptEventError, PayloadStoreRequiredError) as exc:
            return self.fail(sk_seq, "corrupt", f"seq {sk_seq} cannot be decoded: {exc}")
        event = stored.event
        if event.seq != sk_seq:
            return self.fail(
                sk_seq, "reordered",
                f"seq {sk_seq}: the item holds the event of seq {event.seq} (events moved)",
            )
        expected = self.prev.event.seq + 1 if self.prev else 1
        expired = stored.ttl is not None and stored.ttl <= self.now
        if event.seq != expected and self.prev is None and stored.ttl is None:
            self.unproven_start = event.seq  # purged before it, or missing: see finish()
        elif event.seq != expected:
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
            and not stored.erased  # erased content: only its stored digest is left
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


