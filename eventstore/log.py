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

import math
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from .client import DynamoClient, wrap_client
from .errors import AmbiguousResultError, ConditionFailedError, CorruptEventError
from .events import GENESIS_HASH, Event, chain_hash, payload_data, payload_digest
from .fold import NewestFirstFold, Snapshot
from .keys import EVENT_PREFIX, SNAPSHOT_SK, event_sk, is_part_sk, session_pk
from .records import AttrMap, Payload, StoredEvent, decode_event, encode_event
from .snapshots import decode_snapshot

AMBIGUOUS_RETRIES = 3
# The first page holds a fresh snapshot (head, parts), META and the projector's usual
# lag; a larger one would pay for events the snapshot already covers. Without a
# snapshot, an unlimited read's pages grow eightfold (16, 128, 1024, 4096 rows) and a
# limited one sizes its next page from the items per row seen so far.
FIRST_PAGE = 16
SLACK = 8
SESSION_KEYS_BELOW = "T"  # EVENT#... < META < SNAPSHOT... < T
MAX_PAGE = 4096
_TOKEN_NAMESPACE = uuid.UUID("6f1d0c4e-9a57-4f0b-8a1e-2b7c5d9e3f10")


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

    Example:
        ```python
        log = EventLog(boto3.client("dynamodb"), "agent_sessions")
        stored = await log.put(event, prev_hash=head.hash, ttl=None)
        ```
    """

    def __init__(self, client: Any, table_name: str) -> None:
        self.db: DynamoClient = wrap_client(client)
        self.table_name = table_name

    async def read_head(self, session_id: str) -> Head:
        """Return the newest event's seq and hash with one consistent ``Query``."""
        response = await self.db.call(
            "query",
            TableName=self.table_name,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :ev)",
            ExpressionAttributeValues={
                ":pk": {"S": session_pk(session_id)},
                ":ev": {"S": EVENT_PREFIX},
            },
            ExpressionAttributeNames={"#h": "hash"},
            ProjectionExpression="seq, #h",
            ScanIndexForward=False,
            Limit=1,
            ConsistentRead=True,
        )
        items = response.get("Items", [])
        if not items:
            return Head()
        return Head.of_item(items[0])

    async def put(
        self, event: Event, prev_hash: str, *, ttl: int | None, payload: Payload | None = None
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
        psha = payload_digest(payload_data(event)) if event.v >= 2 else None
        digest = chain_hash(prev_hash, event, ttl, payload_sha256=psha)
        items = encode_event(event, prev_hash, digest, ttl=ttl, payload=payload,
                             payload_sha256=psha)
        stored = StoredEvent(event, prev_hash, digest, ttl, psha)
        for attempt in range(AMBIGUOUS_RETRIES + 1):
            try:
                await self._write_new(items, event.token, event.seq)
                return stored
            except ConditionFailedError as exc:
                if exc.item is None:
                    exc.item = await self._get_token(event.session_id, event.seq)
                token = (exc.item or {}).get("token", {}).get("S")
                if token == event.token:
                    return stored
                raise
            except AmbiguousResultError:
                if attempt == AMBIGUOUS_RETRIES:
                    raise
        raise AssertionError("unreachable")

    async def _write_new(self, items: list[AttrMap], token: str, seq: int) -> None:
        condition = "attribute_not_exists(pk)"
        if len(items) == 1:
            await self.db.call(
                "put_item",
                TableName=self.table_name,
                Item=items[0],
                ConditionExpression=condition,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            return
        puts = [
            {"Put": {"TableName": self.table_name, "Item": item,
                     "ConditionExpression": condition,
                     "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}}
            for item in items
        ]
        await self.db.call(
            "transact_write_items",
            TransactItems=puts,
            ClientRequestToken=str(uuid.uuid5(_TOKEN_NAMESPACE, f"{token}:{seq}")),
        )

    async def _get_token(self, session_id: str, seq: int) -> AttrMap | None:
        response = await self.db.call(
            "get_item",
            TableName=self.table_name,
            Key={"pk": {"S": session_pk(session_id)}, "sk": {"S": event_sk(seq)}},
            ProjectionExpression="seq, #t",
            ExpressionAttributeNames={"#t": "token"},
            ConsistentRead=True,
        )
        item: AttrMap | None = response.get("Item")
        return item

    async def read_newest(self, session_id: str, fold: NewestFirstFold) -> ReadResult:
        """Fold the session newest-first from one paged consistent ``Query``.

        The query runs over the whole partition, so the snapshot (if any) arrives
        first, then the newest events; it stops as soon as ``fold`` is done.
        """
        snapshot: Snapshot | None = None
        snapshot_parts: list[AttrMap] = []
        event_parts: list[AttrMap] = []
        head: Head | None = None
        used: int | None = None  # the seq of the snapshot the chain proved, if any
        requests = 0
        page = FIRST_PAGE if fold.limit is None else min(FIRST_PAGE, fold.limit + SLACK)
        rows = 0
        start_key: AttrMap | None = None
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
            response = await self.db.call("query", **params)
            requests += 1
            rows += len(response.get("Items", []))
            for item in response.get("Items", []):
                sk = item["sk"]["S"]
                if sk.startswith(EVENT_PREFIX):
                    if head is None:
                        head = Head.of_item(item)
                    if is_part_sk(sk):
                        event_parts.append(item)
                        continue
                    stored = decode_event(item, event_parts)
                    event_parts = []
                    if snapshot is not None and stored.event.seq <= snapshot.seq:
                        if snapshot.bound_to(stored):
                            fold.feed_snapshot(snapshot)
                            used = snapshot.seq
                        else:  # the chain does not prove it: fold the events instead
                            snapshot = None
                            fold.feed(stored)
                    else:
                        fold.feed(stored)
                elif sk.startswith(SNAPSHOT_SK):
                    if is_part_sk(sk):
                        snapshot_parts.append(item)
                    else:
                        snapshot = _usable_snapshot(item, snapshot_parts, fold.now)
                if fold.done:
                    break
            start_key = response.get("LastEvaluatedKey")
            if start_key is None:  # a snapshot no stored event proves stands for nothing
                snapshot = None
                fold.finish()
            page = _next_page(fold, page, rows)
        return ReadResult(fold.items(), head, used, requests, fold.ttls())

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
        high = event_sk(upto_seq) + "#9999" if upto_seq is not None else EVENT_PREFIX + "~"
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
                yield decode_event(pending, parts)
            pending, parts = item, []
        if pending is not None:
            yield decode_event(pending, parts)


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


def _usable_snapshot(head: AttrMap, parts: list[AttrMap], now: float) -> Snapshot | None:
    """Decode a snapshot; an unusable one is ignored (the events are the truth).

    An expired snapshot is ignored too: its ``ttl`` is that of the newest event it
    folded, so once it is past, every event it stands for has expired, and a session
    that starts again from seq 1 must not be hidden behind the stale snapshot's seq.
    """
    try:
        snapshot = decode_snapshot(head, parts)
    except CorruptEventError:
        return None
    return None if snapshot.expired(now) else snapshot
