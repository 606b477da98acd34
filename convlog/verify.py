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
appended again). Given the signed purge records too (``convlog.purge_record``; pass
``purges``, even empty, whenever digests are in use), an anchored head a signed purge
erased is reported as erased by that purge, not deleted, and an event whose content
was erased without a signed content erasure of its user is a problem (erased): only the
table's tombstones are no proof, a table writer can forge those.

Example:
    ```python
    report = await verify_session(log, "user-123", anchored=anchors.heads.get("user-123", []))
    print(report.ok, report.problem)
    ```
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from eventstore.errors import CorruptEventError, PayloadStoreRequiredError
from eventstore.keys import (
    EVENT_PREFIX,
    SNAPSHOT_SK,
    event_sk,
    is_part_sk,
    session_pk,
    whole_number,
)
from eventstore.log import EventLog
from eventstore.records import AttrMap, StoredEvent, decode_event, object_ref

from .chain_walk import ChainWalk, Problem, ProblemKind, VerifyReport
from .purge_record import PurgeRecord

__all__ = [
    "ChainWalk", "Problem", "ProblemKind", "SessionVerifier", "VerifyReport", "verify_items",
    "verify_session",
]

if TYPE_CHECKING:
    from .anchor import AnchoredHead

VERIFY_PAGE = 500  # items per Query page while verifying


async def verify_session(
    log: EventLog,
    session_id: str,
    *,
    now: float | None = None,
    anchored: Sequence[AnchoredHead] = (),
    purges: Sequence[PurgeRecord] | None = None,
) -> VerifyReport:
    """Walk the chain of a session as the ``Query`` streams it; stop at the first problem.

    Args:
        log: The event log.
        session_id: The session.
        now: Clock for TTL (epoch seconds); defaults to the current time.
        anchored: The heads of this session the signed digests hold.
        purges: The signed purge records of this session (``None``: no digests in use,
            so erased content is not checked against them).

    Returns:
        The report; ``report.ok`` is false and ``report.problem`` names the seq when a
        changed, missing, reordered, truncated, deleted or rewritten event is found.
    """
    verifier = SessionVerifier(session_id, now=now, anchored=anchored, purges=purges)
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
    purges: Sequence[PurgeRecord] | None = None,
) -> VerifyReport:
    """Verify the raw items of one session partition (pure; sorted here by key)."""
    verifier = SessionVerifier(session_id, now=now, anchored=anchored, purges=purges)
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
        purges: Sequence[PurgeRecord] | None = None,
    ) -> None:
        self.now = time.time() if now is None else now
        self.purges = None if purges is None else tuple(purges)
        whole = [p for p in self.purges or () if p.mode == "session"]
        self.erasure = max(whole, key=lambda p: (p.through, p.digest)) if whole else None
        self.content: dict[int, PurgeRecord] = {}  # seq -> the signed erasure covering it
        self.report = VerifyReport(session_id)
        self.walk = ChainWalk(self.report, self.now)
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
        through = whole_number(item.get("purged"))
        if through is not None:  # a purge tombstone (META, SNAPSHOT): the last seq erased
            self.report.purged_through = max(self.report.purged_through or 0, through)
            return True
        if sk.startswith(EVENT_PREFIX):
            if is_part_sk(sk):
                self.parts.append(item)
                return True
            if not self._flush():
                return False
            self.pending, self.payload = item, payload
        elif sk == SNAPSHOT_SK:  # a malformed one (a table writer's) claims nothing
            ttl = whole_number(item["ttl"]) if "ttl" in item else None
            well_formed = "ttl" not in item or ttl is not None
            self.snapshot_seq = whole_number(item.get("seq")) if well_formed else None
            self.snapshot_ttl = ttl
        return True

    def finish(self) -> VerifyReport:
        """Check the last event, the snapshot's seq and the anchored heads; the report."""
        report = self.report
        if not self._flush() or report.problem is not None:
            return report
        start = self.walk.unproven_start
        signed = self.erasure.through if self.erasure else 0
        if start is not None and max(report.purged_through or 0, signed) + 1 < start:
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
        if report.problem is None and self.erasure is not None and (
                report.first_seq is None or report.first_seq > 1):
            report.erased_by = self.erasure  # the events it erased are gone, as signed
        report.erased_content = dict(self.content)
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
        if prev is not None and prev.erased and self.purges is not None:
            return self._check_erased(prev)
        return True

    def _check_erased(self, stored: StoredEvent) -> bool:
        """An erased event needs a signed content erasure of its user (digests in use)."""
        seq = stored.event.seq
        for record in self.purges or ():
            if record.covers_content_of(stored.event.user_id, seq):
                self.content[seq] = record
                return True
        self.report.problem = Problem(
            seq, "erased",
            f"seq {seq}: its content was erased without a signed purge record (a table "
            "writer removed it; a convlog purge signs what it erases)")
        return False

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
        if self.erasure is not None and head.seq <= self.erasure.through:
            return None  # erased by a signed purge
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
