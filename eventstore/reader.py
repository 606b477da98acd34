"""The read path: a session folded newest-first from its snapshot and its newest events.

``read_newest`` sends one newest-first ``Query`` over the session's partition. The
snapshot's keys sort above its events (``EVENT#...`` < ``META`` < ``SNAPSHOT`` <
``SNAPSHOT#...``), so the page meets the snapshot first, then the newest events.
``get_items()`` reads from the top of the snapshot's sealed chunks (it needs them all);
``get_items(limit=N)`` from its head, and reads a chunk by its key only when the tail
in the head does not hold N live items. Events newer than the snapshot are folded; the
event at the snapshot's seq proves it (same seq, same hash), and then only as much of
the snapshot is decoded as the fold still needs: the tail in the head, then chunks
newest first, each checked against the head's chain. When the snapshot lies further
back than the first page of events, the events from ``snapshot.seq`` on are read with
``read_range_at_once`` (one more round trip); no event the snapshot covers is read.

Example:
    ```python
    result = await read_newest(log, "s1", NewestFirstFold(limit=20))
    print(result.items, result.requests)
    ```
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .catchup import bytes_per_event, read_range_at_once
from .chunks import (
    CHUNK_ENTRIES,
    GENESIS_CHAIN,
    Rows,
    chunk_prev,
    chunk_sk,
    decode_rows,
    link,
)
from .errors import CorruptEventError, PayloadStoreRequiredError
from .events import GENESIS_HASH
from .fold import NewestFirstFold
from .keys import (
    EVENT_PREFIX,
    META_SK,
    SNAPSHOT_SK,
    event_sk,
    is_event_sk,
    is_part_sk,
    part_base,
    seq_of,
    session_pk,
    whole_number,
)
from .records import DIGEST_ATTR, AttrMap, object_ref
from .snapshots import decode_snapshot, head_rows, is_chunked, sealed_of

if TYPE_CHECKING:
    from .log import EventLog

# The first page holds the snapshot's head, the meta item and 16 rows more: the newest
# events (the projector's usual lag) or, for a whole read, the snapshot's first chunks
# too (about 1,000 entries). A larger snapshot's other chunks are read in a second round
# trip, beside the newest events. A larger page would pay for events the snapshot
# already covers. Without a snapshot, an unlimited read's pages grow eightfold (16, 128,
# 1024, 4096 rows) and a limited one sizes its next page from the items per row seen.
FIRST_PAGE = 16
SLACK = 8
MAX_PAGE = 4096
VIEW_ROWS = 2  # the snapshot head and the meta item
SNAPSHOT_TOP = SNAPSHOT_SK + "#~"  # above every snapshot key: head, chunks and parts


@dataclass(frozen=True)
class Head:
    """The newest event of a session: its seq and hash (``seq == 0`` when empty)."""

    seq: int = 0
    hash: str = GENESIS_HASH

    @classmethod
    def of_item(cls, item: AttrMap) -> Head:
        """The head an event item (or one of its parts) reveals: its ``seq`` and ``hash``.

        Raises:
            CorruptEventError: The item has no readable ``seq`` or ``hash``.
        """
        seq, digest = whole_number(item.get("seq")), item.get("hash", {}).get("S")
        if seq is None or seq < 1 or not isinstance(digest, str):
            raise CorruptEventError(f"event item {item.get('sk', {}).get('S')!r} is malformed")
        return cls(seq, digest)


@dataclass
class ReadResult:
    """What a newest-first read learned: the items, the head, and the snapshot used."""

    items: list[Any]
    head: Head | None
    snapshot_seq: int | None
    requests: int
    ttls: list[int | None] = field(default_factory=list)  # the expiry of each item


class SnapshotRead:
    """The snapshot a read met, decoded only once an event proves it, and only as needed.

    Issue 10's rule: a snapshot stands for the events up to its ``seq`` only when the
    stored event at that seq carries the hash the snapshot names; otherwise (a forged
    or stale view, or no such event any more) the events are folded instead. The check
    uses the raw items, so a snapshot that turns out unproven is never decoded (nor its
    chunks read). An unusable snapshot (corrupt, chunk missing, object gone) and an
    expired one (its ``ttl`` is that of the newest event it folded) are ignored too.
    """

    def __init__(self, log: EventLog, session_id: str, now: float) -> None:
        self.log = log
        self.session_id = session_id
        self.now = now
        self.head: AttrMap | None = None
        self.items: dict[str, AttrMap] = {}
        self.failed = False
        self.seq_used: int | None = None
        self.requests = 0

    def add(self, item: AttrMap) -> None:
        """Keep a snapshot head, chunk or part item met by the read."""
        sk = item["sk"]["S"]
        if sk == SNAPSHOT_SK:
            self.head = item
        else:
            self.items[sk] = item

    def covers(self, seq: int) -> bool:
        """Whether a live, not yet rejected snapshot claims the event at ``seq``."""
        if self.head is None or self.failed:
            return False
        try:
            if "ttl" in self.head and int(self.head["ttl"]["N"]) <= self.now:
                self.failed = True
                return False
            return seq <= int(self.head["seq"]["N"])
        except (KeyError, ValueError, TypeError):
            self.failed = True
            return False

    async def proven_by(self, event_item: AttrMap, need: int | None) -> Rows | None:
        """The snapshot's entries (oldest first) if ``event_item`` proves it, else ``None``.

        Args:
            event_item: The first event the snapshot covers (the one at its seq).
            need: How many live entries, newest first, the fold still needs
                (``None``: all); older chunks are not read.
        """
        head, self.failed = self.head, True  # one chance: proven now, or never
        if head is None:
            return None
        try:
            if (event_item["seq"]["N"] != head["seq"]["N"]
                    or "hash" not in head or event_item["hash"]["S"] != head["hash"]["S"]):
                return None
            rows = await self._rows(head, need)
        except (CorruptEventError, PayloadStoreRequiredError, KeyError, ValueError, TypeError):
            return None
        self.seq_used = int(head["seq"]["N"])
        return rows

    async def _rows(self, head: AttrMap, need: int | None) -> Rows:
        if not is_chunked(head):  # version 2: one body, in S3 or in parts
            digest = head.get(DIGEST_ATTR, {}).get("S")
            if "parts" in head and digest and not self.items:  # a read from the head down
                base = part_base(SNAPSHOT_SK, digest)
                await self.read_keys(base, base + "#~")
            raw = await self.log.fetch_state(head)
            snapshot = decode_snapshot(head, list(self.items.values()), raw=raw)
            return [[e.item, e.seq, e.ttl] for e in snapshot.entries]
        rows = head_rows(head)
        sealed = sealed_of(head)
        if sealed is None:
            return rows
        now = self.now
        live = sum(1 for r in rows if r[2] is None or r[2] > now)
        fetched: dict[str, bytes | None] = {}
        if need is None:  # a whole read: the chunks kept in S3 are fetched at once
            remote = [c for i in range(sealed.chunks)
                      if (c := self.items.get(chunk_sk(sealed.epoch, i))) is not None
                      and object_ref(c) is not None]
            for chunk, raw in zip(remote, await asyncio.gather(
                    *(self.log.fetch_state(i) for i in remote)), strict=True):
                fetched[chunk["sk"]["S"]] = raw
        older: list[Rows] = []
        expected = sealed.chain
        for index in range(sealed.chunks - 1, -1, -1):
            if need is not None and live >= need:
                break
            sk = chunk_sk(sealed.epoch, index)
            if sk not in self.items:
                wanted = index + 1 if need is None else math.ceil((need - live) / CHUNK_ENTRIES)
                await self._fetch(sealed.epoch, max(0, index - wanted + 1), index)
            item = self.items.get(sk)
            if item is None:
                raise CorruptEventError(f"snapshot chunk {index} is missing")
            raw = fetched.get(sk)
            if raw is None and object_ref(item) is not None:
                raw = await self.log.fetch_state(item)
            parts = ([v for k, v in self.items.items() if k.startswith(sk + "#")]
                     if "parts" in item else [])
            found, digest = decode_rows(item, parts, raw=raw)
            prev = chunk_prev(item)
            if link(prev, digest) != expected or (index == 0 and prev != GENESIS_CHAIN):
                raise CorruptEventError(f"snapshot chunk {index} is out of the chain")
            expected = prev
            older.append(found)
            if need is not None:
                live += sum(1 for r in found if r[2] is None or r[2] > now)
        return [row for chunk in reversed(older) for row in chunk] + rows

    async def _fetch(self, epoch: int, low: int, high: int) -> None:
        """Read chunks ``low..high`` of ``epoch`` (and their parts) by their keys."""
        await self.read_keys(chunk_sk(epoch, high), chunk_sk(epoch, low) + "#~")

    async def read_keys(self, low: str, high: str, after: AttrMap | None = None) -> None:
        """Keep the snapshot items whose sort keys lie in ``low..high`` (below ``after``)."""
        params: dict[str, Any] = {
            "TableName": self.log.table_name,
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :lo AND :hi",
            "ExpressionAttributeValues": {
                ":pk": {"S": session_pk(self.session_id)}, ":lo": {"S": low}, ":hi": {"S": high},
            },
            "ScanIndexForward": False,
            "ConsistentRead": True,
        }
        if after is not None:
            params["ExclusiveStartKey"] = after
        while True:
            response = await self.log.db.call("query", **params)
            self.requests += 1
            for item in response.get("Items", []):
                self.add(item)
            start = response.get("LastEvaluatedKey")
            if start is None:
                return
            params["ExclusiveStartKey"] = start


def _session_query(log: EventLog, session_id: str, top: str, page: int) -> dict[str, Any]:
    """Newest first from ``top`` down to the first event: snapshot, meta, events."""
    return {
        "TableName": log.table_name,
        # the sort-key condition makes a table without a string ``sk`` range key fail
        # loudly instead of reading empty
        "KeyConditionExpression": "pk = :pk AND sk BETWEEN :ev AND :top",
        "ExpressionAttributeValues": {
            ":pk": {"S": session_pk(session_id)},
            ":ev": {"S": EVENT_PREFIX}, ":top": {"S": top},
        },
        "ScanIndexForward": False,
        "ConsistentRead": True,
        "Limit": page,
    }


async def read_newest(log: EventLog, session_id: str, fold: NewestFirstFold) -> ReadResult:
    """Fold the session newest-first: snapshot and newest events in one ``Query``.

    An event is decoded (and its S3 payload fetched) only when the fold needs it, and so
    is the snapshot: an event the snapshot already covers is never decoded.
    """
    snap = SnapshotRead(log, session_id, fold.now)
    whole = fold.limit is None
    page = FIRST_PAGE if fold.limit is None else min(FIRST_PAGE, fold.limit + SLACK)
    top = SNAPSHOT_TOP if whole else SNAPSHOT_SK  # a limited read reads chunks by key
    params = _session_query(log, session_id, top, VIEW_ROWS + page)
    response = await log.db.call("query", **params)
    requests = 1
    start_key = response.get("LastEvaluatedKey")
    if start_key is not None and not is_event_sk(start_key["sk"]["S"]):
        # a snapshot of more chunks than the page held: the rest of it, and the newest events
        for item in response.get("Items", []):
            snap.add(item)
        params = _session_query(log, session_id, EVENT_PREFIX + "~", page)
        response = await _beside(snap, start_key, log.db.call("query", **params))
        requests += 1
    event_parts: list[AttrMap] = []
    head: Head | None = None
    rows, checked = 0, not whole
    while True:
        for item in response.get("Items", []):
            sk = item["sk"]["S"]
            if not is_event_sk(sk):  # the snapshot's head, chunks and parts; the meta item
                if sk != META_SK:
                    snap.add(item)
                continue
            rows += 1
            if is_part_sk(sk):
                event_parts.append(item)
                continue
            if head is None:
                head = Head.of_item(item)
            parts, event_parts = event_parts, []
            state = None
            if snap.covers(seq_of(sk)):
                need = (None if fold.limit is None
                        else fold.limit - fold.collected + fold.pending_pops)
                state = await snap.proven_by(item, need)
            if state is not None:
                fold.feed_rows(state)
            else:
                fold.feed(await log.decode(item, parts))
            if fold.done:
                break
        start_key = response.get("LastEvaluatedKey")
        if fold.done:
            break
        if start_key is None:  # a snapshot no stored event proves stands for nothing
            fold.finish()
            break
        page = _next_page(fold, page, rows)
        if not checked and snap.covers(0):
            low = int(snap.head["seq"]["N"]) if snap.head is not None else 0  # live
            last = start_key["sk"]["S"]
            high = seq_of(last) - (0 if is_part_sk(last) else 1)
            if high >= low:  # the snapshot lies further back than the page
                event_parts, checked = [], True  # the range reads that event again, whole
                response, sent = await _catch_up(
                    log, session_id, low, high, bytes_per_event(response["Items"]))
                requests += sent
                continue
        checked = True
        params["ExclusiveStartKey"] = start_key
        params["Limit"] = page
        response = await log.db.call("query", **params)
        requests += 1
    return ReadResult(fold.items(), head, snap.seq_used, requests + snap.requests, fold.ttls())


async def _beside(
    snap: SnapshotRead, start_key: AttrMap, events: Awaitable[dict[str, Any]]
) -> dict[str, Any]:
    """The events page, while the snapshot's keys below ``start_key`` are read at once."""
    async def rest() -> None:
        if start_key["sk"]["S"] > SNAPSHOT_SK:  # chunks left (not only the head and meta)
            await snap.read_keys(SNAPSHOT_SK, start_key["sk"]["S"], after=start_key)

    outcomes = await asyncio.gather(rest(), events, return_exceptions=True)
    for outcome in outcomes:  # both answered (or failed) before either error is raised
        if isinstance(outcome, BaseException):
            raise outcome
    response: dict[str, Any] = outcomes[1]
    return response


async def _catch_up(
    log: EventLog, session_id: str, low: int, high: int, event_bytes: int
) -> tuple[dict[str, Any], int]:
    """Events ``low..high`` as one response; it goes on below ``low`` if need be."""
    found, sent = await read_range_at_once(
        log.db, log.table_name, session_id, low, high, event_bytes)
    response: dict[str, Any] = {"Items": found}
    if low > 1:  # were the snapshot not proven, the older events come next
        response["LastEvaluatedKey"] = {
            "pk": {"S": session_pk(session_id)}, "sk": {"S": event_sk(low)}}
    return response, sent


def _next_page(fold: NewestFirstFold, page: int, rows: int) -> int:
    """Size the next page: with a limit, as many rows as the missing items need.

    The rows read so far tell how many live items a row yields (events hold several
    items; pops, parts and expired events hold none), so ``limit=N`` reads about the
    events that hold the last N live items, in as few pages as that allows.
    """
    if fold.limit is None:
        return min(page * 8, MAX_PAGE)
    if fold.collected == 0 or rows == 0:
        return min(page * 4, MAX_PAGE)
    missing = fold.limit - fold.collected + fold.pending_pops
    per_row = fold.collected / rows
    return max(SLACK, min(MAX_PAGE, math.ceil(missing / per_row) + SLACK))

