"""The event log of one table: conditional append, newest-first reads, full scans.

``EventLog`` is what ``DynamoDBSession``, the CLI and the projector share. Appends are
compare-and-swap writes at ``head + 1`` (``attribute_not_exists(pk)``); an append whose
response was lost is retried at the same seq with the same token, and a conflict whose
stored item carries our token is recognised as our own write.

Example:
    ```python
    log = EventLog(client, "agent_sessions")
    head = await log.read_head("user-123")
    async for stored in log.iter_events("user-123"):
        print(stored.event.seq, stored.event.type)
    ```
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .catchup import bytes_per_event, read_range_at_once
from .client import DynamoClient, wrap_client
from .errors import (
    AmbiguousResultError,
    ConditionFailedError,
    PayloadStoreRequiredError,
    StorageError,
)
from .events import GENESIS_HASH, Event, chain_hash, payload_data, payload_digest
from .fold import NewestFirstFold, Snapshot
from .keys import (
    EVENT_PREFIX,
    SNAPSHOT_SK,
    event_sk,
    is_event_sk,
    is_part_sk,
    seq_of,
    session_pk,
)
from .limits import DEFAULT_MAX_STATE_BYTES, Limits
from .records import (
    DIGEST_ATTR,
    AttrMap,
    Body,
    StoredEvent,
    decode_event,
    encode_body,
    encode_event,
    object_ref,
)
from .snapshots import LazySnapshot, decode_snapshot

if TYPE_CHECKING:
    from .payloads import PayloadStore

STORE_HINT = (
    ", or give DynamoDBSession an s3_client and bucket_name (create_bucket_if_not_exists)"
    " to keep large payloads in S3"
)
AMBIGUOUS_RETRIES = 3
# The first page holds a fresh snapshot (head, parts), META and the projector's usual
# lag; a larger one would pay for events the snapshot already covers. Without a
# snapshot, an unlimited read's pages grow eightfold (16, 128, 1024, 4096 rows) and a
# limited one sizes its next page from the items per row seen so far.
FIRST_PAGE = 16
SLACK = 8
SESSION_KEYS_BELOW = "T"  # EVENT#... < META < SNAPSHOT... < T
MAX_PAGE = 4096


@dataclass(frozen=True)
class Head:
    """The newest event of a session: its seq and hash (``seq == 0`` when empty)."""

    seq: int = 0
    hash: str = GENESIS_HASH

    @classmethod
    def of_item(cls, item: AttrMap) -> Head:
        """The head an event item (or one of its parts) reveals: its ``seq`` and ``hash``."""
        return cls(int(item["seq"]["N"]), str(item["hash"]["S"]))


@dataclass
class ReadResult:
    """What a newest-first read learned: the items, the head, and the snapshot used."""

    items: list[Any]
    head: Head | None
    snapshot_seq: int | None
    requests: int
    ttls: list[int | None] = field(default_factory=list)  # the expiry of each item


class EventLog:
    """Append to and read from the event log stored in one DynamoDB table.

    Args:
        client: A boto3 or aiobotocore DynamoDB client (or a ``DynamoClient``).
        table_name: The table.
        max_payload_bytes: Never inflate an event payload beyond this (default: the
            ``CONVLOG_MAX_ADD_BYTES`` variable, else ``DEFAULT_MAX_ADD_BYTES``).

    Example:
        ```python
        log = EventLog(boto3.client("dynamodb"), "agent_sessions")
        stored = await log.put(event, prev_hash=head.hash, ttl=None)
        ```
    """

    def __init__(
        self, client: Any, table_name: str, *, max_payload_bytes: int | None = None,
        payloads: PayloadStore | None = None,
    ) -> None:
        self.db: DynamoClient = wrap_client(client)
        self.table_name = table_name
        self.max_payload_bytes = max_payload_bytes or Limits.from_env().max_add_bytes
        self.payloads = payloads

    async def decode(self, head: AttrMap, parts: list[AttrMap]) -> StoredEvent:
        """Decode an event item, fetching (and verifying) its payload from S3 if it is there.

        Raises:
            CorruptEventError: Malformed, missing parts or object, or a digest mismatch.
            PayloadStoreRequiredError: The payload is in S3 and this log has no bucket.
        """
        raw = await self.fetch_payload(head)
        return decode_event(head, parts, max_bytes=self.max_payload_bytes, raw=raw)

    async def fetch_payload(self, head: AttrMap) -> bytes | None:
        """The canonical JSON of an event item's S3 payload (verified), or ``None``.

        Raises:
            CorruptEventError: The object is missing, too large, or not what the digest
                says.
            PayloadStoreRequiredError: The payload is in S3 and this log has no bucket.
        """
        return await self._fetch(head, self.max_payload_bytes, "event")

    async def decode_snapshot(self, head: AttrMap, parts: list[AttrMap]) -> Snapshot:
        """Decode a snapshot item (and its S3 payload, if it has one)."""
        return decode_snapshot(head, parts,
                               raw=await self._fetch(head, DEFAULT_MAX_STATE_BYTES, "snapshot"))

    async def _fetch(self, head: AttrMap, max_bytes: int, what: str) -> bytes | None:
        ref = object_ref(head)
        if ref is None:
            return None
        if self.payloads is None:
            raise PayloadStoreRequiredError(
                f"this {what} of {head.get('pk', {}).get('S')} keeps its payload in S3; "
                "give an s3_client and bucket_name to read it"
            )
        key, digest, encoding = ref
        return await self.payloads.get(key, digest, encoding, max_bytes=max_bytes)

    def body_for(self, data: Any, limits: Limits | None = None) -> Body:
        """Encode a payload for this log: any size within ``limits`` when a bucket is set.

        Raises:
            PayloadTooLargeError: A cap is broken, or (without a bucket) the payload does
                not fit in the table; the message says how to lift the limit.
        """
        if self.payloads is not None:
            return encode_body(data, limits=limits, inline_limit=None)
        return encode_body(data, limits=limits, store_hint=STORE_HINT)

    async def offload(self, session_id: str, body: Body, *, ttl_seconds: int | None) -> str | None:
        """Store ``body`` in S3 if it is too large for the table; return its key, if stored.

        Called once before the conditional put that commits the event (and reused when
        the put is retried at another seq).
        """
        if self.payloads is None or not self.payloads.wants(body):
            return None
        return await self.payloads.put(session_id, body, ttl_seconds=ttl_seconds)

    async def read_head(self, session_id: str) -> Head:
        """Return the newest event's seq and hash, normally with one consistent ``Query``.

        Parts sort right after their head (``EVENT#<seq>#...``); parts whose commit was
        lost have no head at all. When the newest item is a part, the next query starts
        at (and includes) its seq's head key, so a lost commit never passes for a head.
        """
        upper = EVENT_PREFIX + "~"
        while True:
            response = await self.db.call(
                "query",
                TableName=self.table_name,
                KeyConditionExpression="pk = :pk AND sk BETWEEN :ev AND :top",
                ExpressionAttributeValues={
                    ":pk": {"S": session_pk(session_id)},
                    ":ev": {"S": EVENT_PREFIX},
                    ":top": {"S": upper},
                },
                ExpressionAttributeNames={"#h": "hash"},
                ProjectionExpression="sk, seq, #h",
                ScanIndexForward=False,
                Limit=1,
                ConsistentRead=True,
            )
            items = response.get("Items", [])
            if not items:
                return Head()
            sk = items[0]["sk"]["S"]
            if not is_part_sk(sk):
                return Head.of_item(items[0])
            upper = event_sk(seq_of(sk))

    async def put(
        self, event: Event, prev_hash: str, *, ttl: int | None, payload: Body | None = None,
        object_key: str | None = None,
        extra: AttrMap | None = None,
    ) -> StoredEvent:
        """Write ``event`` at its seq if that seq is free.

        A lost response is retried at the same seq; a conflict with an item that
        carries this event's token means the earlier attempt landed.

        Raises:
            ConditionFailedError: Another writer holds the seq.
            AmbiguousResultError: The response was lost on every attempt (the event is
                stored at most once).
            PayloadTooLargeError: The event cannot fit even in parts (nothing written).
        """
        psha = None
        if event.v >= 2:
            psha = payload.digest if payload else payload_digest(payload_data(event))
        digest = chain_hash(prev_hash, event, ttl, payload_sha256=psha)
        items = encode_event(event, prev_hash, digest, ttl=ttl, payload=payload,
                             payload_sha256=psha, object_key=object_key,
                             extra=extra)
        stored = StoredEvent(event, prev_hash, digest, ttl, psha)
        for attempt in range(AMBIGUOUS_RETRIES + 1):
            try:
                await self._write_new(items)
                return stored
            except ConditionFailedError as exc:
                if exc.item is None:
                    exc.item = await self._get_token(event.session_id, event.seq)
                token = (exc.item or {}).get("token", {}).get("S")
                if token == event.token:
                    return stored
                await self._drop_parts(items, exc.item)
                raise
            except AmbiguousResultError:
                if attempt == AMBIGUOUS_RETRIES:
                    raise
        raise AssertionError("unreachable")

    async def _write_new(self, items: list[AttrMap]) -> None:
        """Write the parts, then the one conditional put of the head (the commit marker).

        Parts are content-addressed and invisible on their own: only the head, written
        with ``attribute_not_exists(pk)``, makes them part of the log. No transaction.
        """
        for part in items[1:]:
            await self.db.call("put_item", TableName=self.table_name, Item=part)
        await self.db.call(
            "put_item",
            TableName=self.table_name,
            Item=items[0],
            ConditionExpression="attribute_not_exists(pk)",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )

    async def _drop_parts(self, items: list[AttrMap], winner: AttrMap | None) -> None:
        """After a lost commit, delete its parts unless the winner's are the same ones.

        Best effort: a part left behind is never read as part of the log (readers pick
        parts by their head's digest), and purge removes it with the session.
        """
        mine = items[0].get(DIGEST_ATTR, {}).get("S")
        if len(items) == 1 or winner is None or winner.get(DIGEST_ATTR, {}).get("S") == mine:
            return
        with contextlib.suppress(StorageError):
            for part in items[1:]:
                await self.db.call("delete_item", TableName=self.table_name,
                                   Key={"pk": part["pk"], "sk": part["sk"]})

    async def _get_token(self, session_id: str, seq: int) -> AttrMap | None:
        response = await self.db.call(
            "get_item",
            TableName=self.table_name,
            Key={"pk": {"S": session_pk(session_id)}, "sk": {"S": event_sk(seq)}},
            ProjectionExpression="seq, #t, #d",
            ExpressionAttributeNames={"#t": "token", "#d": DIGEST_ATTR},
            ConsistentRead=True,
        )
        item: AttrMap | None = response.get("Item")
        return item

    async def read_newest(self, session_id: str, fold: NewestFirstFold) -> ReadResult:
        """Fold the session newest-first from one paged consistent ``Query``.

        The query runs over the whole partition, so the snapshot (if any) arrives
        first, then the newest events; it stops as soon as ``fold`` is done. An event is
        decoded (and its S3 payload fetched) only when the fold needs it, and so is the
        snapshot: an event the snapshot already covers is never decoded.
        When the first page shows a snapshot further behind than the page reaches, the
        events from ``snapshot.seq`` on are read with ``read_range_at_once`` (one more
        round trip).
        """
        snap = LazySnapshot(self.decode_snapshot, fold.now)
        event_parts: list[AttrMap] = []
        head: Head | None = None
        requests = 0
        page = FIRST_PAGE if fold.limit is None else min(FIRST_PAGE, fold.limit + SLACK)
        rows = 0
        start_key: AttrMap | None = None
        catch_up: tuple[int, int, int] | None = None  # events low..high, bytes per event
        while not fold.done:
            params: dict[str, Any] = {
                "TableName": self.table_name,
                # the sort-key condition (all of a session's keys sort below "T") makes a
                # table without a string ``sk`` range key fail loudly instead of reading empty
                "KeyConditionExpression": "pk = :pk AND sk < :top",
                "ExpressionAttributeValues": {
                    ":pk": {"S": session_pk(session_id)},
                    ":top": {"S": SESSION_KEYS_BELOW},
                },
                "ScanIndexForward": False,
                "ConsistentRead": True,
                "Limit": page,
            }
            if start_key:
                params["ExclusiveStartKey"] = start_key
            if catch_up is not None:
                response, sent = await self._catch_up(session_id, *catch_up)
                requests, catch_up = requests + sent, None
            else:
                response = await self.db.call("query", **params)
                requests += 1
            rows += len(response.get("Items", []))
            for item in response.get("Items", []):
                sk = item["sk"]["S"]
                if sk.startswith(EVENT_PREFIX):
                    if is_part_sk(sk):
                        event_parts.append(item)
                        continue
                    if head is None:
                        head = Head.of_item(item)
                    parts, event_parts = event_parts, []
                    snapshot = await snap.proven_by(item) if snap.covers(seq_of(sk)) else None
                    if snapshot is not None:
                        fold.feed_snapshot(snapshot)
                    else:
                        fold.feed(await self.decode(item, parts))
                elif sk.startswith(SNAPSHOT_SK):
                    snap.add(item, is_part_sk(sk))
                if fold.done:
                    break
            start_key = response.get("LastEvaluatedKey")
            if start_key is None:  # a snapshot no stored event proves stands for nothing
                fold.finish()
            elif fold.limit is None and requests == 1 and snap.covers(0):
                low = int(snap.head["seq"]["N"]) if snap.head is not None else 0  # live
                last = start_key["sk"]["S"]
                high = seq_of(last) - (0 if is_part_sk(last) else 1) if is_event_sk(last) else 0
                if high >= low:  # the snapshot lies further back than the page
                    event_parts = []  # the range reads that event again, whole
                    catch_up = (low, high, bytes_per_event(response["Items"]))
            page = _next_page(fold, page, rows)
        return ReadResult(fold.items(), head, snap.seq_used, requests, fold.ttls())

    async def _catch_up(
        self, session_id: str, low: int, high: int, event_bytes: int
    ) -> tuple[dict[str, Any], int]:
        """Events ``low..high`` as one response; it goes on below ``low`` if need be."""
        found, sent = await read_range_at_once(
            self.db, self.table_name, session_id, low, high, event_bytes)
        response: dict[str, Any] = {"Items": found}
        if low > 1:  # were the snapshot not proven, the older events come next
            response["LastEvaluatedKey"] = {
                "pk": {"S": session_pk(session_id)}, "sk": {"S": event_sk(low)}}
        return response, sent

    async def iter_events(
        self, session_id: str, *, after_seq: int = 0, upto_seq: int | None = None
    ) -> AsyncIterator[StoredEvent]:
        """Yield every stored event of a session, oldest first.

        Args:
            session_id: The session.
            after_seq: Start after this seq.
            upto_seq: Stop after this seq (``None``: the newest).
        """
        low = event_sk(after_seq + 1)
        high = event_sk(upto_seq) + "#~" if upto_seq is not None else EVENT_PREFIX + "~"
        pending: AttrMap | None = None
        parts: list[AttrMap] = []
        async for item in self.db.items(
            "query",
            TableName=self.table_name,
            KeyConditionExpression="pk = :pk AND sk BETWEEN :lo AND :hi",
            ExpressionAttributeValues={
                ":pk": {"S": session_pk(session_id)},
                ":lo": {"S": low},
                ":hi": {"S": high},
            },
            ConsistentRead=True,
        ):
            if is_part_sk(item["sk"]["S"]):
                parts.append(item)
                continue
            if pending is not None:
                yield await self.decode(pending, parts)
            pending, parts = item, []
        if pending is not None:
            yield await self.decode(pending, parts)


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
