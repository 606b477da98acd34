"""Read-only access to the projected views for the CLI's reports.

The projector (``stream_handlers``) writes the views; the CLI only shows them. Reading
is done here from the key layout in ``eventstore.keys`` so that the CLI does not depend
on the projection code.

Example:
    ```python
    snapshot = await read_snapshot(client, "agent_sessions", "user-123")
    rows = await read_tool_cache(client, "agent_sessions", "get_weather")
    ```
"""

from __future__ import annotations

from typing import Any

from .client import wrap_client
from .errors import CorruptEventError
from .fold import Snapshot
from .keys import META_SK, SNAPSHOT_SK, session_pk, tool_pk
from .records import AttrMap
from .snapshots import decode_snapshot


def plain(value: AttrMap) -> Any:
    """Convert one DynamoDB attribute value to plain Python (numbers stay strings)."""
    (kind, inner), = value.items()
    if kind == "M":
        return {k: plain(v) for k, v in inner.items()}
    if kind == "L":
        return [plain(v) for v in inner]
    if kind == "B":
        return f"<{len(inner)} bytes>"
    if kind == "NULL":
        return None
    return inner


async def read_snapshot(client: Any, table: str, session_id: str) -> Snapshot | None:
    """The session's snapshot view, or ``None`` when there is none (or it is unusable)."""
    db = wrap_client(client)
    response = await db.call(
        "query",
        TableName=table,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :s)",
        ExpressionAttributeValues={":pk": {"S": session_pk(session_id)}, ":s": {"S": SNAPSHOT_SK}},
        ConsistentRead=True,
    )
    items = response.get("Items", [])
    head = next((i for i in items if i["sk"]["S"] == SNAPSHOT_SK), None)
    if head is None:
        return None
    try:
        return decode_snapshot(head, [i for i in items if i is not head])
    except CorruptEventError:
        return None


async def read_meta(client: Any, table: str, session_id: str) -> dict[str, Any] | None:
    """The session's meta item as plain values, or ``None``."""
    db = wrap_client(client)
    response = await db.call(
        "get_item",
        TableName=table,
        Key={"pk": {"S": session_pk(session_id)}, "sk": {"S": META_SK}},
        ConsistentRead=True,
    )
    item = response.get("Item")
    return {k: plain(v) for k, v in item.items()} if item else None


async def read_tool_cache(client: Any, table: str, tool_name: str) -> list[dict[str, Any]]:
    """Every cached result of one tool, as plain values."""
    db = wrap_client(client)
    rows: list[dict[str, Any]] = []
    start: AttrMap | None = None
    while True:
        params: dict[str, Any] = {
            "TableName": table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": tool_pk(tool_name)}},
            "ConsistentRead": True,
        }
        if start:
            params["ExclusiveStartKey"] = start
        response = await db.call("query", **params)
        rows.extend({k: plain(v) for k, v in item.items()} for item in response.get("Items", []))
        start = response.get("LastEvaluatedKey")
        if start is None:
            return rows
