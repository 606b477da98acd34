"""Helpers shared by the projector, pump, tool-cache and session-index tests."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from convlog.local import EmbeddedEndpoint
from convlog.pump import StreamPump
from eventstore.client import DynamoClient
from eventstore.events import (
    GENESIS_HASH,
    Event,
    ItemPopped,
    ItemsAdded,
    SessionCleared,
    canonical_json,
    chain_hash,
)
from eventstore.fold import fold_forward
from eventstore.records import StoredEvent, encode_event
from stream_handlers.projector import build_handler

Spec = tuple[str, Any]


# Fixed for the whole test run, and recent enough that default TTLs have not run out.
BASE_EPOCH = int(time.time()) // 60 * 60 - 600


def ts_of(n: int) -> str:
    """A deterministic ISO timestamp, ``n`` seconds after the run's base time."""
    moment = datetime.fromtimestamp(BASE_EPOCH + n, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class History:
    """Deterministic events of one session, written straight to the table."""

    session_id: str
    user_id: str | None = None
    head_hash: str = GENESIS_HASH
    seq: int = 0

    def build(self, spec: Spec, ts: str, ttl: int | None = None) -> StoredEvent:
        kind, value = spec
        self.seq += 1
        common: dict[str, Any] = {
            "session_id": self.session_id, "seq": self.seq, "ts": ts,
            "user_id": self.user_id, "token": f"tok-{self.session_id}-{self.seq}",
        }
        event: Event
        if kind == "add":
            event = ItemsAdded(items=value, **common)
        elif kind == "pop":
            event = ItemPopped(item=value, **common)
        else:
            event = SessionCleared(**common)
        digest = chain_hash(self.head_hash, event, ttl)
        stored = StoredEvent(event, self.head_hash, digest, ttl)
        self.head_hash = digest
        return stored


def put_events(client: Any, table: str, events: Sequence[StoredEvent]) -> None:
    """Write events with BatchWriteItem (25 a request); events with parts use a transaction."""
    items: list[dict[str, Any]] = []
    for stored in events:
        encoded = encode_event(stored.event, stored.prev_hash, stored.hash, ttl=stored.ttl)
        if len(encoded) > 1:
            client.transact_write_items(
                TransactItems=[{"Put": {"TableName": table, "Item": i}} for i in encoded]
            )
        else:
            items.extend(encoded)
    for start in range(0, len(items), 25):
        requests = [{"PutRequest": {"Item": i}} for i in items[start : start + 25]]
        while requests:
            response = client.batch_write_item(RequestItems={table: requests})
            requests = response.get("UnprocessedItems", {}).get(table, [])


def expected_items(events: Sequence[StoredEvent]) -> list[Any]:
    """What get_items must return: the fold of every event."""
    return fold_forward(events).items()


def view_items(client: Any, table: str) -> list[dict[str, Any]]:
    """Every item that is not an event, sorted by key (a table scan)."""
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        page = client.scan(**kwargs)
        items.extend(i for i in page["Items"] if not i["sk"]["S"].startswith("EVENT#"))
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return sorted(items, key=lambda i: (i["pk"]["S"], i["sk"]["S"]))


def dump(items: list[dict[str, Any]]) -> str:
    """Byte-exact text of items (binary values as hex), for comparisons."""
    def plain(value: Any) -> Any:
        if isinstance(value, bytes | bytearray):
            return {"bytes": bytes(value).hex()}
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value
    return canonical_json(plain(items))


def make_pump(
    endpoint: EmbeddedEndpoint,
    table: str,
    handler: Callable[[dict[str, Any], Any], Any] | None = None,
    *,
    handler_client: Any = None,
    **options: Any,
) -> StreamPump:
    """A pump on its own clients (so request counters see only the handler's calls)."""
    if handler is None:
        handler = build_handler(handler_client or endpoint.client("dynamodb"), table)
    return StreamPump(
        handler, table, dynamodb=endpoint.client("dynamodb"),
        streams=endpoint.client("dynamodbstreams"), **options,
    )


def load_event(name: str) -> dict[str, Any]:
    """A canned Lambda event from tests/events/."""
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "events" / name
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def stream_records(endpoint: EmbeddedEndpoint, table: str) -> list[dict[str, Any]]:
    """Every (filtered) record now in the table's stream, in the shape Lambda delivers."""
    seen: list[dict[str, Any]] = []

    def collect(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.extend(event["Records"])
        return {"batchItemFailures": []}

    make_pump(endpoint, table, collect).drain()
    return seen


def insert_records(events: Sequence[StoredEvent], first_id: int = 1) -> list[dict[str, Any]]:
    """Lambda-shaped INSERT records of events (as the stream would carry their heads)."""
    from convlog.pump import lambda_record

    arn = "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2026-01-01T00:00:00.000"
    records = []
    for n, stored in enumerate(events, start=first_id):
        head = encode_event(stored.event, stored.prev_hash, stored.hash, ttl=stored.ttl)[0]
        records.append(lambda_record({
            "eventID": f"e{n}", "eventName": "INSERT", "eventVersion": "1.1",
            "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
            "dynamodb": {"Keys": {"pk": head["pk"], "sk": head["sk"]}, "NewImage": head,
                         "SequenceNumber": str(10**20 + n), "SizeBytes": 100,
                         "StreamViewType": "NEW_AND_OLD_IMAGES"},
        }, arn))
    return records


class WatchedClient(DynamoClient):
    """A real client that counts calls, round trips and the most requests in flight.

    Counted in the event loop, so the figures are deterministic: requests sent together
    (``asyncio.gather``) are in flight together, and a call that starts while none is
    in flight starts a new round trip. ``items`` collects what queries returned.

    ``unprocess`` (fault injection) moves keys of the first ``BatchGetItem`` responses
    into ``UnprocessedKeys``, as DynamoDB does when a request exceeds its limits.
    """

    def __init__(self, raw: Any, *, threads: int, unprocess: int = 0, times: int = 1) -> None:
        super().__init__(raw, threads=threads)
        self.calls: Counter[str] = Counter()
        self.in_flight = self.peak = self.round_trips = 0
        self.unprocess, self.times = unprocess, times
        self.items: list[dict[str, Any]] = []

    async def call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        self.calls[operation] += 1
        self.round_trips += self.in_flight == 0  # nothing else was waiting: a new round
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if operation == "batch_get_item" and self.unprocess and self.times:
                self.times -= 1
                return await self._partly(kwargs)
            response = await super().call(operation, **kwargs)
            self.items.extend(response.get("Items", []))
            return response
        finally:
            self.in_flight -= 1

    async def _partly(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        ((table, request),) = kwargs["RequestItems"].items()
        keys, left = request["Keys"][: -self.unprocess], request["Keys"][-self.unprocess :]
        response: dict[str, Any] = {"Responses": {table: []}}
        if keys:
            response = await super().call(
                "batch_get_item", RequestItems={table: {**request, "Keys": keys}})
        response["UnprocessedKeys"] = {table: {**request, "Keys": left}}
        return response
