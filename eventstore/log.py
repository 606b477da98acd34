"""The event log of one table: conditional append, newest-first reads, full scans.

The read path itself (snapshot, chunks, newest events) lives in ``eventstore.reader``.

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
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from .client import DynamoClient, wrap_client
from .errors import (
    AmbiguousResultError,
    ConditionFailedError,
    PayloadStoreRequiredError,
    StorageError,
)
from .events import Event, chain_hash, payload_data, payload_digest
from .fold import NewestFirstFold, Snapshot
from .keys import EVENT_PREFIX, event_sk, is_part_sk, seq_of, session_pk
from .limits import DEFAULT_MAX_STATE_BYTES, Limits
from .reader import FIRST_PAGE, Head, ReadResult, read_newest
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
from .snapshots import decode_snapshot

if TYPE_CHECKING:
    from .payloads import PayloadStore

STORE_HINT = (
    ", or give DynamoDBSession an s3_client and bucket_name (create_bucket_if_not_exists)"
    " to keep large payloads in S3"
)
AMBIGUOUS_RETRIES = 3
__all__ = ["FIRST_PAGE", "EventLog", "Head", "ReadResult"]  # Head, ReadResult: of the reader


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
        """Decode a version 2 snapshot item (and its S3 payload, if it has one)."""
        return decode_snapshot(head, parts, raw=await self.fetch_state(head))

    async def fetch_state(self, item: AttrMap) -> bytes | None:
        """The canonical JSON of a snapshot body or chunk kept in S3 (verified), or ``None``.

        Raises:
            CorruptEventError: The object is missing, too large, or not what its digest says.
            PayloadStoreRequiredError: It is in S3 and this log has no bucket.
        """
        return await self._fetch(item, DEFAULT_MAX_STATE_BYTES, "snapshot")

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
        """Fold the session newest-first: snapshot and newest events (``eventstore.reader``)."""
        return await read_newest(self, session_id, fold)

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

