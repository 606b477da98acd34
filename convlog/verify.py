"""Verification of a session's log: the hash chain, streamed, and the signed anchor.

``SessionVerifier`` takes the raw items of one session partition in key order (what a
``Query`` returns) one at a time, so verifying a session of any length holds one event
(with its parts) in memory, not the history. It checks, oldest first: the sort key's seq
against the stored seq, no gap, ``prev_hash`` equal to the previous ``hash``, the payload
against its digest (unless ``convlog purge --shared content`` erased it: then only the
stored digest links it), and ``hash`` against the event's hash schema. With TTL, a prefix
of expired events is reported, not treated as tampering; after ``convlog purge`` (its
tombstone present), events erased before the first one left are reported as
``purged_through``.

Given the heads the signed digests anchored (``convlog.anchor``), it also names what
the table alone cannot prove: a tail cut after an anchored head (truncated), an
anchored event deleted while its anchored ``ttl`` was still in the future (deleted), and
an anchored event whose hash differs (rewritten: the chain was recomputed, or cut and
appended again).

Example:
    ```python
    report = await verify_session(log, "user-123", anchored=anchors.heads.get("user-123", []))
    print(report.ok, report.problem)
    ```
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from eventstore.errors import CorruptEventError, PayloadStoreRequiredError
from eventstore.events import GENESIS_HASH, chain_hash, payload_data, payload_digest
from eventstore.keys import EVENT_PREFIX, SNAPSHOT_SK, event_sk, is_part_sk, seq_of, session_pk
from eventstore.log import EventLog
from eventstore.records import AttrMap, StoredEvent, decode_event, object_ref

if TYPE_CHECKING:
    from .anchor import AnchoredHead

VERIFY_PAGE = 500  # items per Query page while verifying

ProblemKind = Literal[
    "changed", "missing", "reordered", "corrupt", "truncated", "deleted", "rewritten"
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

    @property
    def ok(self) -> bool:
        """Whether the chain is intact."""
        return self.problem is None


async def verify_session(
    log: EventLog,
    session_id: str,
    *,
    now: float | None = None,
    anchored: Sequence[AnchoredHead] = (),
) -> VerifyReport:
    """Walk the chain of a session as the ``Query`` streams it; stop at the first problem.

    Args:
        log: The event log.
        session_id: The session.
        now: Clock for TTL (epoch seconds); defaults to the current time.
        anchored: The heads of this session the signed digests hold.

    Returns:
        The report; ``report.ok`` is false and ``report.problem`` names the seq when a
        changed, missing, reordered, truncated, deleted or rewritten event is found.
    """
    verifier = SessionVerifier(session_id, now=now, anchored=anchored)
    first: AttrMap | None = None
    async for item in log.db.items(
        "query",
        TableName=log.table_name,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": session_pk(session_id)}},
        ConsistentRead=True,
        Limit=VERIFY_PAGE,  # bounded pages: memory does not grow with the history
    ):
        if item["sk"]["S"] == event_sk(1):
            first = item
        payload: bytes | Exception | None = None
        if object_ref(item) is not None and not is_part_sk(item["sk"]["S"]):
            try:  # the payload is in S3: fetched (and checked) here, one event at a time
                payload = await log.fetch_payload(item)
            except (CorruptEventError, PayloadStoreRequiredError) as exc:
                payload = exc
        if not verifier.feed(item, payload):
            break
    report = verifier.finish()
    if report.ok and first is not None:
        await _check_branch_origin(log, first, report)
    return report


async def _check_branch_origin(log: EventLog, first: AttrMap, report: VerifyReport) -> None:
    """A branch's first event names its parent's seq and hash: the parent must still hold it."""
    if first.get("type", {}).get("S") != "branch_created":
        return
    origin = decode_event(first).event
    if origin.type != "branch_created" or origin.parent_seq == 0:
        return
    async for parent in log.iter_events(
        origin.parent_session, after_seq=origin.parent_seq - 1, upto_seq=origin.parent_seq
    ):
        if parent.hash == origin.parent_hash:
            return
    report.problem = Problem(
        1, "changed",
        f"seq 1: the branch starts at {origin.parent_session!r} seq {origin.parent_seq}, "
        f"which no longer holds hash {origin.parent_hash[:12]}... (the parent was changed "
        "or removed)",
    )


def verify_items(
    session_id: str,
    items: Iterable[AttrMap],
    *,
    now: float | None = None,
    anchored: Sequence[AnchoredHead] = (),
) -> VerifyReport:
    """Verify the raw items of one session partition (pure; sorted here by key)."""
    verifier = SessionVerifier(session_id, now=now, anchored=anchored)
    for item in sorted(items, key=lambda i: str(i["sk"]["S"])):
        if not verifier.feed(item):
            break
    return verifier.finish()


class SessionVerifier:
    """Verify one session from its raw items, fed in key order, in constant memory.

    Example:
        ```python
        verifier = SessionVerifier("user-123")
        for item in items_in_key_order:
            if not verifier.feed(item):
                break
        report = verifier.finish()
        ```
    """

    def __init__(
        self, session_id: str, *, now: float | None = None,
        anchored: Sequence[AnchoredHead] = (),
    ) -> None:
        self.now = time.time() if now is None else now
        self.report = VerifyReport(session_id)
        self.walk = _ChainWalk(self.report, self.now)
        self.anchored: dict[int, list[AnchoredHead]] = {}  # seq -> heads anchored there
        for head in anchored:
            self.anchored.setdefault(head.seq, []).append(head)
        self.found: dict[int, str] = {}  # hash of each anchored seq present in the log
        self.pending: AttrMap | None = None
        self.payload: bytes | Exception | None = None
        self.parts: list[AttrMap] = []
        self.snapshot_seq: int | None = None
        self.snapshot_ttl: int | None = None

    def feed(self, item: AttrMap, payload: bytes | Exception | None = None) -> bool:
        """Take the next item; ``False`` once a problem is found (stop feeding).

        ``payload`` is the S3 payload of an event head that keeps it there (its canonical
        JSON, or the error fetching it raised).
        """
        sk = item["sk"]["S"]
        if "purged" in item:  # a purge tombstone (META, SNAPSHOT): names the last seq erased
            through = int(item["purged"]["N"])
            self.report.purged_through = max(self.report.purged_through or 0, through)
            return True
        if sk.startswith(EVENT_PREFIX):
            if is_part_sk(sk):
                self.parts.append(item)
                return True
            if not self._flush():
                return False
            self.pending, self.payload = item, payload
        elif sk == SNAPSHOT_SK:
            self.snapshot_seq = int(item["seq"]["N"])
            self.snapshot_ttl = int(item["ttl"]["N"]) if "ttl" in item else None
        return True

    def finish(self) -> VerifyReport:
        """Check the last event, the snapshot's seq and the anchored heads; the report."""
        report = self.report
        if not self._flush() or report.problem is not None:
            return report
        start = self.walk.unproven_start
        if start is not None and (report.purged_through or 0) + 1 < start:
            what = "seq 1" if start == 2 else f"seq 1..{start - 1}"
            report.problem = Problem(1, "missing",
                                     f"{what} missing: the log starts at seq {start}")
            return report
        last = report.last_seq or 0
        if (
            self.snapshot_seq is not None
            and self.snapshot_seq > last
            and not (self.snapshot_ttl is not None and self.snapshot_ttl <= self.now)
        ):
            report.problem = Problem(
                last + 1, "missing",
                f"seq {last + 1}..{self.snapshot_seq} missing: the snapshot has applied seq "
                f"{self.snapshot_seq} but the log ends at seq {last}",
            )
            return report
        report.problem = self._anchor_problem()
        return report

    def _flush(self) -> bool:
        pending, parts = self.pending, [p for p in self.parts if self.pending is not None
                                        and p["sk"]["S"].startswith(self.pending["sk"]["S"])]
        self.pending, self.parts = None, []
        if pending is None:
            return True
        if not self.walk.step(pending, parts, self.payload):
            return False
        prev = self.walk.prev
        if prev is not None and prev.event.seq in self.anchored:
            self.found[prev.event.seq] = prev.hash
        return True

    def _anchor_problem(self) -> Problem | None:
        report = self.report
        problems: list[Problem] = []
        newest: tuple[int, int] | None = None
        for seq in sorted(self.anchored):
            for head in self.anchored[seq]:
                problem = self._check_head(head)
                if problem is not None:
                    problems.append(problem)
                elif seq in self.found and (newest is None or seq >= newest[0]):
                    newest = (seq, max(head.digest, newest[1] if newest else 0))
        report.anchored = newest
        return min(problems, key=lambda p: p.seq) if problems else None

    def _check_head(self, head: AnchoredHead) -> Problem | None:
        report, where = self.report, f"digest {head.digest}"
        if head.seq in self.found:
            if self.found[head.seq] == head.hash:
                return None
            return Problem(
                head.seq, "rewritten",
                f"seq {head.seq} differs from {where}: the chain was rewritten "
                "(recomputed, or cut and appended again)",
            )
        if head.ttl is not None and head.ttl <= self.now:
            return None  # expired by the anchored ttl: DynamoDB may have deleted it
        last = report.last_seq or 0
        if head.seq > last:
            return Problem(
                last + 1, "truncated",
                f"seq {last + 1}..{head.seq} missing: {where} anchored seq {head.seq} but "
                f"the log ends at seq {last} (the tail was cut)",
            )
        expiry = "never" if head.ttl is None else _iso(head.ttl)
        return Problem(
            head.seq, "deleted",
            f"seq {head.seq} was deleted while live: {where} anchored it, expiring {expiry}",
        )


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


class _ChainWalk:
    """State of the oldest-first walk in ``verify_session``."""

    def __init__(self, report: VerifyReport, now: float) -> None:
        self.report = report
        self.now = now
        self.prev: StoredEvent | None = None
        self.in_expired_prefix = True
        # the first event's seq when the log starts after 1 without expired events: a
        # purge tombstone (it sorts after the events) may still prove the prefix erased
        self.unproven_start: int | None = None

    def fail(self, seq: int, kind: ProblemKind, message: str) -> bool:
        self.report.problem = Problem(seq, kind, message)
        return False

    def step(
        self, head: AttrMap, parts: list[AttrMap], payload: bytes | Exception | None = None
    ) -> bool:
        report, sk_seq = self.report, seq_of(head["sk"]["S"])
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


