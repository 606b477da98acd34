"""Erasure on request: every item of a session, or of all the sessions of a user.

``plan_purge`` finds what belongs to the sessions (events and their parts, snapshot
parts, the meta item, tool-cache entries written from those sessions) without changing
anything; ``execute_purge`` deletes it with ``BatchWriteItem`` in batches of 25 and
retries unprocessed items with backoff.

The sessions of a user are found by a ``Scan`` for items carrying ``user_id`` (events
and meta items), so a session is found even when its views were never projected.

Example:
    ```python
    plan = await plan_purge(db, "agent_sessions", user_id="alice")
    print(plan.counts())
    await execute_purge(db, "agent_sessions", plan)
    ```
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from eventstore.branches import REGISTRY_PREFIX
from eventstore.client import DynamoClient
from eventstore.errors import InvalidInputError, StorageError
from eventstore.history import branch_session_id
from eventstore.keys import (
    EVENT_PREFIX,
    META_SK,
    SESSION_PREFIX,
    SNAPSHOT_SK,
    TOOL_PREFIX,
    is_part_sk,
    session_id_of,
    session_pk,
    validate_session_id,
)
from eventstore.payloads import PayloadStore
from eventstore.records import AttrMap

BATCH_SIZE = 25
MAX_BATCH_ATTEMPTS = 10
_BACKOFF_BASE = 0.05
_BACKOFF_CAP = 2.0

Key = tuple[str, str]


@dataclass
class PurgePlan:
    """The keys to delete, grouped by session (tool-cache entries under their session)."""

    sessions: list[str] = field(default_factory=list)
    keys: list[Key] = field(default_factory=list)

    def counts(self) -> Counter[str]:
        """How many items of each kind the plan deletes."""
        return Counter(kind_of(sk if not pk.startswith(TOOL_PREFIX) else "TOOL")
                       for pk, sk in self.keys)


def kind_of(sk: str) -> str:
    """Name the kind of item a sort key belongs to (for the purge report)."""
    if sk == "TOOL":
        return "tool-cache entries"
    if sk.startswith(EVENT_PREFIX):
        return "event parts" if is_part_sk(sk) else "events"
    if sk.startswith(SNAPSHOT_SK):
        return "snapshot parts"
    if sk == META_SK:
        return "meta items"
    return "other items"


def _scan(db: DynamoClient, table: str, **params: Any) -> AsyncIterator[AttrMap]:
    return db.items("scan", TableName=table, **params)


async def _partition_keys(db: DynamoClient, table: str, pk: str) -> list[Key]:
    return [
        (i["pk"]["S"], i["sk"]["S"])
        async for i in db.items(
            "query",
            TableName=table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": pk}},
            ProjectionExpression="pk, sk",
            ConsistentRead=True,
        )
    ]


async def plan_purge(
    db: DynamoClient, table: str, *, session_id: str | None = None, user_id: str | None = None
) -> PurgePlan:
    """Find every item of one session, or of every session of one user.

    Raises:
        InvalidInputError: Neither or both of ``session_id`` and ``user_id`` given.
    """
    if (session_id is None) == (user_id is None):
        raise InvalidInputError("purge needs exactly one of a session id or a user id")
    if session_id is not None:
        sessions = [validate_session_id(session_id)]
    else:
        if not user_id:
            raise InvalidInputError("the user id must not be empty")
        found: set[str] = set()
        async for item in _scan(
            db, table, ProjectionExpression="pk",
            FilterExpression="user_id = :u AND begins_with(pk, :s)",
            ExpressionAttributeValues={":u": {"S": user_id}, ":s": {"S": SESSION_PREFIX}},
        ):
            found.add(session_id_of(item["pk"]["S"]))
        sessions = sorted(found)
    plan = PurgePlan(sessions=sessions)
    pending = list(sessions)
    while pending:
        sid = pending.pop(0)
        keys = await _partition_keys(db, table, session_pk(sid))
        plan.keys.extend(keys)
        for _, sk in keys:  # the session's branches are partitions of their own
            branch = branch_session_id(sid, sk[len(REGISTRY_PREFIX):])
            if sk.startswith(REGISTRY_PREFIX) and branch not in plan.sessions:
                plan.sessions.append(branch)
                pending.append(branch)
    if sessions:
        wanted = set(plan.sessions)
        async for item in _scan(
            db, table, ProjectionExpression="pk, sk, #s",
            FilterExpression="begins_with(pk, :t) AND attribute_exists(#s)",
            ExpressionAttributeNames={"#s": "session"},
            ExpressionAttributeValues={":t": {"S": TOOL_PREFIX}},
        ):
            if item["session"].get("S") in wanted:
                plan.keys.append((item["pk"]["S"], item["sk"]["S"]))
    return plan


async def execute_purge(
    db: DynamoClient,
    table: str,
    plan: PurgePlan,
    *,
    on_batch: Callable[[int], None] | None = None,
    payloads: PayloadStore | None = None,
) -> int:
    """Delete every key of ``plan`` in batches of 25; return how many were deleted.

    With ``payloads``, the sessions' objects in the payload bucket (large events and
    snapshots) are deleted first, so no copy of a purged payload stays in S3.

    Raises:
        StorageError: Items stayed unprocessed after ``MAX_BATCH_ATTEMPTS`` tries.
    """
    if payloads is not None:
        for session_id in plan.sessions:
            await payloads.delete_session(session_id)
    deleted = 0
    for start in range(0, len(plan.keys), BATCH_SIZE):
        batch = plan.keys[start : start + BATCH_SIZE]
        requests: list[AttrMap] = [
            {"DeleteRequest": {"Key": {"pk": {"S": pk}, "sk": {"S": sk}}}} for pk, sk in batch
        ]
        for attempt in range(MAX_BATCH_ATTEMPTS):
            response = await db.call("batch_write_item", RequestItems={table: requests})
            requests = response.get("UnprocessedItems", {}).get(table, [])
            if not requests:
                break
            await asyncio.sleep(random.uniform(0, min(_BACKOFF_CAP, _BACKOFF_BASE * 2**attempt)))
        else:
            raise StorageError(
                f"purge: {len(requests)} deletes still unprocessed after "
                f"{MAX_BATCH_ATTEMPTS} attempts; run the purge again"
            )
        deleted += len(batch)
        if on_batch:
            on_batch(len(batch))
    return deleted
