"""Data and servers shared by the console tests: two tenants' sessions on the moto server."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

from convlog.console.app import create_app
from convlog.console.server import ConsoleServer
from convlog.local import EmbeddedEndpoint
from convlog.pump import StreamPump
from eventstore import DynamoDBSession, create_table_if_not_exists
from eventstore.keys import event_sk, session_pk
from eventstore.records import decode_event, encode_event
from stream_handlers.projector import build_handler

ACME_USER, GLOBEX_USER = "acme/alice", "globex/bob"
TRIP, CHAT, EDITED, OTHER = "acme/trip", "acme/chat", "acme/edited", "globex/secret"
EDITED_SEQ = 2
FORGED_TEXT = "I never said this"


async def _converse(client: Any, table: str) -> None:
    trip = DynamoDBSession(TRIP, client, table, user_id=ACME_USER)
    await trip.add_items([{"role": "user", "content": "Plan a day in Paris"}])
    await trip.add_items([
        {"type": "function_call", "call_id": "c1", "name": "get_weather",
         "arguments": '{"city": "Paris"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny, 21 C"},
    ])
    await trip.add_items([{"role": "assistant", "content": "Sunny: walk along the Seine."}])
    await trip.pop_item()
    await trip.add_items([{"role": "assistant", "content": "Sunny: visit the Louvre."}])
    chat = DynamoDBSession(CHAT, client, table, user_id=ACME_USER)
    await chat.add_items([{"role": "user", "content": "hello"}])
    edited = DynamoDBSession(EDITED, client, table, user_id=ACME_USER)
    await edited.add_items([{"role": "user", "content": "Transfer 10 EUR to Bob"}])
    await edited.add_items([{"role": "assistant", "content": "Done: 10 EUR sent."}])
    await edited.add_items([{"role": "user", "content": "thanks"}])
    other = DynamoDBSession(OTHER, client, table, user_id=GLOBEX_USER)
    await other.add_items([{"role": "user", "content": "globex quarterly numbers"}])


def edit_event(client: Any, table: str, session_id: str, seq: int, text: str) -> None:
    """Rewrite the content of an event's first item in place, keeping its stored hashes."""
    key = {"pk": {"S": session_pk(session_id)}, "sk": {"S": event_sk(seq)}}
    head = client.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]
    stored = decode_event(head)
    event = stored.event
    items = [dict(event.items[0], content=text), *event.items[1:]]  # type: ignore[union-attr]
    forged = event.model_copy(update={"items": items})
    (item, *_parts) = encode_event(forged, stored.prev_hash, stored.hash, ttl=stored.ttl)
    client.put_item(TableName=table, Item=item)


@dataclass
class ConsoleData:
    """A table with acme's and globex's sessions, projected, and one edited event."""

    endpoint: EmbeddedEndpoint
    client: Any
    table: str

    def app(self, **kwargs: Any) -> Any:
        return create_app(self.client, self.table, **kwargs)

    def server(self, **kwargs: Any) -> ConsoleServer:
        return ConsoleServer(self.app(**kwargs))


def project(data: ConsoleData) -> None:
    """Run the projector over what was written since the last drain."""
    pump = StreamPump(build_handler(data.client, data.table), data.table, dynamodb=data.client,
                      streams=data.endpoint.client("dynamodbstreams"))
    pump.drain()


def seed(endpoint: EmbeddedEndpoint, prefix: str = "console") -> ConsoleData:
    client = endpoint.client("dynamodb")
    table = f"convlog-{prefix}-{uuid.uuid4().hex[:8]}"
    asyncio.run(create_table_if_not_exists(client, table))
    asyncio.run(_converse(client, table))
    data = ConsoleData(endpoint, client, table)
    project(data)
    edit_event(client, table, EDITED, EDITED_SEQ, FORGED_TEXT)
    return data
