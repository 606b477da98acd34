"""Reading the events between a lagging snapshot and the newest page, in one round trip.

``EventLog.read_newest`` starts with one page of the partition, newest first: the
snapshot, the meta item and the newest events. When the projector lags further than
that page reaches, the events still missing are exactly those from ``snapshot.seq``
(the event at the snapshot's seq proves it: same seq, same hash) up to the oldest event
the page held. Their number is known, and the page tells how large an event is, so
``read_range_at_once`` cuts that range into pieces small enough for one ``Query`` page
each (DynamoDB returns at most 1 MB per page) and sends them together: one more round
trip of wall time, whatever the lag, and no event the snapshot covers is read.

Example:
    ```python
    items = await read_range_at_once(db, "agent_sessions", "s1", 1, 1_000, 1_400)
    ```
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Any

from .keys import event_sk, session_pk
from .records import AttrMap, item_size

if TYPE_CHECKING:
    from .client import DynamoClient

PIECE_BYTES = 768 * 1024  # below the 1 MB a Query page may hold, with room for misjudging
MAX_PIECES = 32


def bytes_per_event(items: list[AttrMap]) -> int:
    """The mean size of the event items (heads and parts) among ``items``."""
    sizes = [item_size(i) for i in items if i["sk"]["S"].startswith("EVENT#")]
    return max(1, sum(sizes) // len(sizes)) if sizes else 1024


async def read_range_at_once(
    db: DynamoClient, table_name: str, session_id: str, low: int, high: int, event_bytes: int
) -> tuple[list[AttrMap], int]:
    """Every item of events ``low..high`` (with their parts), newest first.

    The range is split into pieces of about ``PIECE_BYTES`` (from ``event_bytes`` per
    event), queried concurrently; a piece that still pages is followed to its end.

    Returns:
        The items, newest first, and the number of requests sent.
    """
    count = high - low + 1
    pieces = max(1, min(MAX_PIECES, count, math.ceil(count * event_bytes / PIECE_BYTES)))
    step = math.ceil(count / pieces)
    bounds = [(max(low, top - step + 1), top) for top in range(high, low - 1, -step)]
    results = await asyncio.gather(
        *(_read_piece(db, table_name, session_id, lo, hi) for lo, hi in bounds)
    )
    items = [item for piece, _ in results for item in piece]
    return items, sum(requests for _, requests in results)


async def _read_piece(
    db: DynamoClient, table_name: str, session_id: str, low: int, high: int
) -> tuple[list[AttrMap], int]:
    params: dict[str, Any] = {
        "TableName": table_name,
        "KeyConditionExpression": "pk = :pk AND sk BETWEEN :lo AND :hi",
        "ExpressionAttributeValues": {
            ":pk": {"S": session_pk(session_id)},
            ":lo": {"S": event_sk(low)},
            ":hi": {"S": event_sk(high) + "#9999"},  # its parts sort after the head
        },
        "ScanIndexForward": False,
        "ConsistentRead": True,
    }
    items: list[AttrMap] = []
    requests = 0
    while True:
        response = await db.call("query", **params)
        requests += 1
        items.extend(response.get("Items", []))
        start = response.get("LastEvaluatedKey")
        if start is None:
            return items, requests
        params["ExclusiveStartKey"] = start
