"""Recompute the derived views of a session by replaying its log through the projector.

The log is the truth; views (snapshot, meta, tool-cache entries) can always be rebuilt
from it -- after an incident, or for a new projection version. ``rebuild_session`` reads
the session's event items and feeds them, in the exact shape Lambda delivers
(``{"Records": [...]}``, DynamoDB JSON images with binary as base64), to the same
projector handler the stream uses. The projector's writes are conditional on the seq
they apply, so a rebuild is idempotent; ``reset=True`` first deletes the session's
snapshot and meta items so that they are recomputed from seq 1. Without it, a view that
disagrees with the log (``convlog.deep.check_views``: forged, corrupt, or ahead of the
log, which no conditional write would ever replace) is deleted first, so the rebuild
repairs it.

The handler is passed in: ``eventstore`` never imports ``stream_handlers``.

Example:
    ```python
    from stream_handlers.projector import build_handler

    handler = build_handler(client, "agent_sessions")
    applied = await rebuild_session(EventLog(client, "agent_sessions"), "user-123", handler)
    ```
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from eventstore.errors import StorageError
from eventstore.keys import EVENT_PREFIX, META_SK, SNAPSHOT_SK, is_part_sk, session_pk
from eventstore.log import EventLog
from eventstore.records import AttrMap
from eventstore.table import STREAM_BATCH_SIZE, STREAM_VIEW_TYPE

from .deep import check_views
from .pump import lambda_image

Handler = Callable[[dict[str, Any], Any], Any]
_REBUILD_ARN = "arn:aws:dynamodb:local:000000000000:table/{table}/stream/rebuild"


def insert_record(item: AttrMap, table: str, sequence: int) -> dict[str, Any]:
    """A Lambda-shaped DynamoDB stream ``INSERT`` record of ``item``."""
    return {
        "eventID": f"rebuild-{sequence}",
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "local",
        "dynamodb": {
            "Keys": {"pk": item["pk"], "sk": item["sk"]},
            "NewImage": lambda_image(item),
            "SequenceNumber": f"{sequence:021d}",
            "SizeBytes": 0,
            "StreamViewType": STREAM_VIEW_TYPE,
        },
        "eventSourceARN": _REBUILD_ARN.format(table=table),
    }


async def _event_items(log: EventLog, session_id: str) -> AsyncIterator[AttrMap]:
    async for item in log.db.items(
        "query",
        TableName=log.table_name,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :ev)",
        ExpressionAttributeValues={
            ":pk": {"S": session_pk(session_id)}, ":ev": {"S": EVENT_PREFIX},
        },
        ConsistentRead=True,
    ):
        if not is_part_sk(item["sk"]["S"]):
            yield item


async def reset_views(log: EventLog, session_id: str) -> int:
    """Delete the session's snapshot (head, chunks of every epoch, parts) and meta items."""
    keys = [i async for i in log.db.items(  # every page: a snapshot's chunks can be many
        "query",
        TableName=log.table_name,
        KeyConditionExpression="pk = :pk AND sk >= :meta",
        ExpressionAttributeValues={":pk": {"S": session_pk(session_id)}, ":meta": {"S": META_SK}},
        ProjectionExpression="pk, sk",
        ConsistentRead=True,
    ) if i["sk"]["S"] == META_SK or i["sk"]["S"].startswith(SNAPSHOT_SK)]
    for key in keys:
        await log.db.call("delete_item", TableName=log.table_name, Key=key)
    return len(keys)


async def rebuild_session(
    log: EventLog,
    session_id: str,
    handler: Handler,
    *,
    reset: bool = False,
    batch_size: int = STREAM_BATCH_SIZE,
) -> int:
    """Replay every event of a session through ``handler``; return the events fed.

    Raises:
        StorageError: The projector reported a record as failed (the views then stop
            before that event; the message names its seq).
    """
    if reset or await check_views(log, session_id):
        await reset_views(log, session_id)
    fed = 0
    batch: list[dict[str, Any]] = []
    async for item in _event_items(log, session_id):
        batch.append(insert_record(item, log.table_name, int(item["seq"]["N"])))
        if len(batch) >= batch_size:
            fed += await _feed(handler, batch, session_id)
            batch = []
    if batch:
        fed += await _feed(handler, batch, session_id)
    return fed


async def _feed(handler: Handler, records: list[dict[str, Any]], session_id: str) -> int:
    response = await asyncio.to_thread(handler, {"Records": records}, None)
    failures = (response or {}).get("batchItemFailures", [])
    if failures:
        seq = int(failures[0]["itemIdentifier"])
        raise StorageError(
            f"rebuild of session {session_id!r} stopped: the projector rejected seq {seq} "
            "(run 'convlog verify' on the session)"
        )
    return len(records)
