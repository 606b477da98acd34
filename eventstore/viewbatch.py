"""The views of many sessions in a few requests: ``BatchGetItem``, 100 keys at a time.

The projector reads the views (meta item and snapshot head) of every session in a
stream batch before it applies the batch. One ``Query`` per session costs a round trip
per session; ``read_views_batch`` asks for all of them with consistent ``BatchGetItem``
requests of up to ``BATCH_GET_KEYS`` keys, sent at once, and asks again for the keys
DynamoDB left unprocessed (with a short, growing pause). Only a session whose snapshot
is split into parts (its head says how many) is read again with ``read_views``, the
one ``Query`` that also finds its parts -- and any stale part of an older, larger
snapshot, which the projector then deletes.

Example:
    ```python
    states = await read_views_batch(db, "agent_sessions", ["s1", "s2"])
    print(states["s1"].snapshot, states["s2"].meta)
    ```
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .errors import ThrottledError
from .keys import META_SK, SNAPSHOT_SK, session_id_of, session_pk
from .records import AttrMap
from .views import ViewState, read_views, view_state

if TYPE_CHECKING:
    from .client import DynamoClient
    from .payloads import PayloadStore

BATCH_GET_KEYS = 100  # DynamoDB's limit per BatchGetItem request
VIEW_SKS = (META_SK, SNAPSHOT_SK)  # the items read_views_batch reads per session
UNPROCESSED_RETRIES = 8
FIRST_PAUSE_SECONDS = 0.02


async def read_views_batch(
    db: DynamoClient, table_name: str, session_ids: Sequence[str],
    *, payloads: PayloadStore | None = None,
) -> dict[str, ViewState]:
    """Read the views of every session in ``session_ids``, in as few requests as allowed.

    Returns:
        The ``ViewState`` of each session (as ``read_views`` would return it).

    Raises:
        ThrottledError: Keys were still unprocessed after ``UNPROCESSED_RETRIES`` tries.
    """
    keys = [
        {"pk": {"S": session_pk(sid)}, "sk": {"S": sk}} for sid in session_ids for sk in VIEW_SKS
    ]
    chunks = [keys[i : i + BATCH_GET_KEYS] for i in range(0, len(keys), BATCH_GET_KEYS)]
    found: dict[tuple[str, str], AttrMap] = {}
    for items in await asyncio.gather(*(_get_all(db, table_name, c) for c in chunks)):
        for item in items:
            found[(item["pk"]["S"], item["sk"]["S"])] = item
    states: dict[str, ViewState] = {}
    split: list[str] = []
    for sid in session_ids:
        pk = session_pk(sid)
        head = found.get((pk, SNAPSHOT_SK))
        if head is not None and _has_parts(head):
            split.append(sid)
            continue
        states[sid] = await view_state(found.get((pk, META_SK)), head, payloads=payloads)
    for sid, state in zip(split, await asyncio.gather(
        *(read_views(db, table_name, sid, payloads=payloads) for sid in split)
    ), strict=True):
        states[sid] = state
    return states


def _has_parts(head: AttrMap) -> bool:
    try:
        return int(head.get("parts", {}).get("N", "1")) > 1
    except ValueError:
        return False  # a malformed head reads as absent in view_state


async def _get_all(db: DynamoClient, table_name: str, keys: list[AttrMap]) -> list[AttrMap]:
    """One ``BatchGetItem`` of ``keys``, repeated for what DynamoDB left unprocessed."""
    items: list[AttrMap] = []
    request: dict[str, Any] = {table_name: {"Keys": keys, "ConsistentRead": True}}
    pause = FIRST_PAUSE_SECONDS
    for attempt in range(UNPROCESSED_RETRIES + 1):
        response = await db.call("batch_get_item", RequestItems=request)
        items.extend(response.get("Responses", {}).get(table_name, []))
        request = response.get("UnprocessedKeys") or {}
        if not request:
            return items
        if attempt < UNPROCESSED_RETRIES:
            await asyncio.sleep(pause)
            pause *= 2
    left = len(request.get(table_name, {}).get("Keys", []))
    sessions = sorted({session_id_of(k["pk"]["S"]) for k in request[table_name]["Keys"]})
    raise ThrottledError(
        f"batch_get_item on table {table_name!r}: {left} keys still unprocessed after "
        f"{UNPROCESSED_RETRIES} retries (sessions {', '.join(sessions[:5])}...)"
    )
