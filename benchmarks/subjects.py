"""The implementations under test, behind one small interface.

* ``convlog`` -- this project's event-log ``DynamoDBSession`` (aiobotocore client), with
  the projector fed by the local stream pump; its twin table holds the same events but
  no projector runs on it ("projector off": reads replay the events);
* ``peer`` -- the single-item ``DynamoDBSession`` of the PyPI package
  ``openai-agents-session`` (aiobotocore client, table keyed on ``session_id``);
* ``sqlite`` -- the OpenAI Agents SDK's ``SQLiteSession`` on a local file (reference).

Every DynamoDB client is watched by an ``benchmarks.meter.CapacityMeter``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convlog.local import EmbeddedEndpoint
from eventstore import DynamoDBSession, create_table_if_not_exists
from eventstore.keys import session_pk

from .meter import CapacityMeter
from .workload import history

PEER_PACKAGE = "openai-agents-session"


def peer_version() -> str | None:
    """The installed version of the peer package, or ``None``."""
    try:
        return importlib.metadata.version(PEER_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass
class Subject:
    """One implementation: how to open a session, grow it, and what it consumed."""

    key: str
    label: str
    meter: CapacityMeter | None = None
    lengths: dict[str, int] = field(default_factory=dict)

    def open(self, session_id: str) -> Any:
        raise NotImplementedError

    async def grow(self, session: Any, session_id: str, target: int) -> None:
        """Add turns (2 items each) until the session holds ``target`` items."""
        current = self.lengths.get(session_id, 0)
        if current < target:
            await session.add_items(history(current, target - current))
        self.lengths[session_id] = max(current, target)

    def added(self, session_id: str, count: int) -> None:
        self.lengths[session_id] = self.lengths.get(session_id, 0) + count

    async def close(self) -> None:
        return None


class ConvlogSubject(Subject):
    """convlog on the embedded endpoint, with the projector run by the stream pump."""

    def __init__(self, endpoint: EmbeddedEndpoint, client: Any, shadow: Any) -> None:
        super().__init__("convlog", "convlog", CapacityMeter(client, shadow=shadow))
        self.endpoint = endpoint
        self.client = client
        self.shadow = shadow
        self.table = f"bench-convlog-{uuid.uuid4().hex[:8]}"
        self.twin = f"bench-convlog-noproj-{uuid.uuid4().hex[:8]}"
        self.pump: Any = None
        self.copied: dict[str, str] = {}
        self.projector_error: str | None = None

    async def setup(self) -> None:
        await create_table_if_not_exists(self.client, self.table)
        await create_table_if_not_exists(self.client, self.twin)
        try:
            from convlog.pump import StreamPump
            from stream_handlers.projector import build_handler
        except ImportError as exc:  # the projector has not landed
            self.projector_error = f"projector not importable: {exc}"
            return
        handler_client = self.endpoint.client("dynamodb")
        self.pump = StreamPump(
            build_handler(handler_client, self.table), self.table,
            dynamodb=self.endpoint.client("dynamodb"),
            client_kwargs=self.endpoint.client_kwargs(),
        )

    def open(self, session_id: str) -> Any:
        return DynamoDBSession(session_id, self.client, self.table)

    def open_twin(self, session_id: str) -> Any:
        return DynamoDBSession(session_id, self.client, self.twin)

    async def grow(self, session: Any, session_id: str, target: int) -> None:
        """Grow turn by turn through ``add_items``, as an agent would."""
        current = self.lengths.get(session_id, 0)
        while current < target:
            turn_items = history(current, 2)
            await session.add_items(turn_items)
            current += 2
        self.lengths[session_id] = current

    async def project(self) -> int:
        """Run the projector over everything in the stream (fresh snapshots)."""
        if self.pump is None:
            return 0
        delivered: int = await asyncio.to_thread(self.pump.drain)
        return delivered

    def copy_to_twin(self, session_id: str) -> int:
        """Copy the session's new event items to the twin table (no projector runs there)."""
        after = self.copied.get(session_id, "EVENT#")
        values = {":pk": {"S": session_pk(session_id)}, ":after": {"S": after},
                  ":end": {"S": "EVENT#~"}}
        items: list[dict[str, Any]] = []
        start: dict[str, Any] | None = None
        while True:
            params: dict[str, Any] = {
                "TableName": self.table,
                "KeyConditionExpression": "pk = :pk AND sk BETWEEN :after AND :end",
                "ExpressionAttributeValues": values, "ConsistentRead": True,
            }
            if start:
                params["ExclusiveStartKey"] = start
            page = self.shadow.query(**params)
            items.extend(page.get("Items", []))
            start = page.get("LastEvaluatedKey")
            if not start:
                break
        for i in range(0, len(items), 25):
            requests = [{"PutRequest": {"Item": item}} for item in items[i : i + 25]]
            pending: dict[str, Any] = {self.twin: requests}
            while pending:
                pending = self.shadow.batch_write_item(RequestItems=pending).get(
                    "UnprocessedItems", {}
                )
        if items:
            self.copied[session_id] = items[-1]["sk"]["S"] + "#~"
        return len(items)


class PeerSubject(Subject):
    """The single-item ``DynamoDBSession`` from ``openai-agents-session``."""

    def __init__(self, client: Any, shadow: Any) -> None:
        super().__init__(
            "peer", f"single-item DynamoDBSession ({PEER_PACKAGE} {peer_version()})",
            CapacityMeter(client, shadow=shadow),
        )
        self.client = client
        self.table = f"bench-peer-{uuid.uuid4().hex[:8]}"

    async def setup(self) -> None:
        from openai_agents_session.dynamodb import create_table_if_not_exists as create

        await create(self.client, self.table)

    def open(self, session_id: str) -> Any:
        from openai_agents_session import DynamoDBSession as PeerSession

        return PeerSession(session_id, self.client, self.table)


class SqliteSubject(Subject):
    """The SDK's ``SQLiteSession`` on a file in a temporary directory."""

    def __init__(self, directory: Path) -> None:
        super().__init__("sqlite", "SQLiteSession (SDK, local file)")
        self.path = directory / "bench.sqlite3"
        self.sessions: list[Any] = []

    async def setup(self) -> None:
        return None

    def open(self, session_id: str) -> Any:
        from agents.memory import SQLiteSession

        session = SQLiteSession(session_id, str(self.path))
        self.sessions.append(session)
        return session

    async def close(self) -> None:
        for session in self.sessions:
            with contextlib.suppress(Exception):
                session.close()
