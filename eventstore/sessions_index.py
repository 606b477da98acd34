"""The per-user session index: a user's sessions, most recently active first.

The projector keeps one ``META`` item per session (title, created, last active, item
count). When the session's events carry a ``user_id``, the item is also in the global
secondary index ``by_user`` under ``gsi1pk = USER#<user_id>`` and
``gsi1sk = <last active ISO time>#<session id>``, so one ``Query`` on the index, newest
first, returns a page of a user's sessions. A session ``<tenant>/...`` is indexed only
under users ``<tenant>/...`` (the projector leaves any other user, or a user id too
long for the index, unindexed; ``DynamoDBSession`` rejects them at construction). The
index also holds the writers' own user records (``gsi1sk = #<session id>``, on the
first event each session object writes); listings skip them, erasure reads them.
A listing also skips any item that is not a ``META`` item of a session of the user's
tenant, whatever attributes a tenant wrote into its own partitions. The
index is eventually consistent: a session shows up (or moves to the top) once the
projector has seen its events. The first page also carries the user's usage totals over
all sessions (``SessionPage.user_usage``, one more ``Query`` sent with the page's).

Example:
    ```python
    from eventstore import list_sessions

    page = await list_sessions(client, "agent_sessions", "user-42", limit=20)
    for info in page.sessions:
        print(info.session_id, info.title, info.last_active, info.item_count)
    if page.cursor:
        page = await list_sessions(client, "agent_sessions", "user-42", cursor=page.cursor)
    ```
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from dataclasses import dataclass
from typing import Any

from .client import wrap_client
from .errors import CorruptEventError, InvalidInputError
from .history import branch_owner
from .keys import META_SK, user_index_problem, user_pk
from .table import USER_INDEX
from .user_usage import UsageTotals, read_user_usage
from .views import decode_meta

MAX_LIMIT = 1000


@dataclass(frozen=True)
class SessionInfo:
    """One session of a user, as the index knows it.

    Example:
        ```python
        info = (await list_sessions(client, "agent_sessions", "u1")).sessions[0]
        print(info.session_id, info.title, info.item_count)
        ```
    """

    session_id: str
    title: str | None
    last_active: str
    item_count: int
    created: str
    requests: int = 0
    """Usage totals of the session (every ``store_run_usage``), as projected."""
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    branch_id: str | None = None
    """Set for a branch of ``session_id`` (``DynamoDBSession(session_id, ...)``, then
    ``switch_to_branch(branch_id)``); ``None`` for the session itself (``main``)."""


@dataclass(frozen=True)
class SessionPage:
    """A page of sessions, newest-active first; ``cursor`` fetches the next (or ``None``).

    Example:
        ```python
        page = await list_sessions(client, "agent_sessions", "u1", limit=20)
        while page.cursor:
            page = await list_sessions(client, "agent_sessions", "u1", cursor=page.cursor)
        ```
    """

    sessions: list[SessionInfo]
    cursor: str | None = None
    user_usage: UsageTotals | None = None
    """The user's usage totals over every session (``eventstore.user_usage``, kept by the
    projector); on the first page only (``None`` on the pages a cursor fetches)."""


async def list_sessions(
    client: Any,
    table_name: str,
    user_id: str,
    *,
    limit: int = 20,
    cursor: str | None = None,
) -> SessionPage:
    """List a user's sessions, most recently active first.

    Args:
        client: A boto3 or aiobotocore DynamoDB client.
        table_name: The convlog table.
        user_id: Whose sessions.
        limit: Most sessions per page (1 to 1000).
        cursor: ``SessionPage.cursor`` of the previous page.

    Returns:
        The page. Sessions whose views have expired (``ttl`` in the past) are left out,
        so a page can be shorter than ``limit`` and still have a cursor.

    Raises:
        InvalidInputError: Bad user id, limit or cursor (nothing is read).
    """
    if not isinstance(user_id, str) or not user_id:
        raise InvalidInputError("user_id must be a non-empty string")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidInputError(f"limit must be an int from 1 to {MAX_LIMIT}, got {limit!r}")
    start = _decode_cursor(cursor, user_id) if cursor is not None else None
    params: dict[str, Any] = {
        "TableName": table_name,
        "IndexName": USER_INDEX,
        # the writers' user records (gsi1sk "#<session id>", for erasure) sort below "0"
        "KeyConditionExpression": "gsi1pk = :u AND gsi1sk >= :lo",
        # a ttl of another type (a table writer's) matches no comparison: left out
        "FilterExpression": "attribute_not_exists(#t) OR (attribute_type(#t, :n) AND #t > :now)",
        "ExpressionAttributeNames": {"#t": "ttl"},
        "ExpressionAttributeValues": {
            ":u": {"S": user_pk(user_id)},
            ":lo": {"S": "0"},
            ":now": {"N": str(int(time.time()))},
            ":n": {"S": "N"},
        },
        "ScanIndexForward": False,
        "Limit": limit,
    }
    if start:
        params["ExclusiveStartKey"] = start
    db = wrap_client(client)
    if start is None:  # the first page also carries the user's totals: both sent at once
        response, totals = await asyncio.gather(
            db.call("query", **params), read_user_usage(client, table_name, user_id))
    else:
        response, totals = await db.call("query", **params), None
    sessions: list[SessionInfo] = []
    for item in response.get("Items", []):
        if item.get("sk", {}).get("S") != META_SK:
            continue  # a writer's user record, or an item a tenant put in its own partition
        try:
            meta = decode_meta(item)
        except CorruptEventError:
            continue
        if user_index_problem(user_id, meta.session_id) is not None:
            continue  # a session of another tenant: whatever its item says, not this user's
        session_id = (meta.session_id if meta.branch_id is None
                      else branch_owner(meta.session_id, meta.branch_id))
        sessions.append(
            SessionInfo(session_id, meta.title, meta.last_active, meta.item_count,
                        meta.created, *meta.usage, branch_id=meta.branch_id)
        )
    last = response.get("LastEvaluatedKey")
    return SessionPage(sessions, _encode_cursor(last, user_id) if last else None, totals)


def _encode_cursor(key: dict[str, Any], user_id: str) -> str:
    data = json.dumps({"u": user_id, "k": key}, sort_keys=True, separators=(",", ":"))
    return base64.urlsafe_b64encode(data.encode("utf-8")).decode("ascii").rstrip("=")


def _decode_cursor(cursor: Any, user_id: str) -> dict[str, Any]:
    if not isinstance(cursor, str) or not cursor:
        raise InvalidInputError("cursor must be a non-empty string from a previous page")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        key = data["k"]
        owner = data["u"]
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise InvalidInputError("cursor is not one returned by list_sessions") from exc
    if owner != user_id or not isinstance(key, dict):
        raise InvalidInputError("cursor belongs to another user's listing")
    return key
