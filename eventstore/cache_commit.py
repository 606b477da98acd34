"""Writing tool-cache entries without transactions: stage, check, then commit.

A cache entry must never undo an invalidation of its tool made after its result was
produced, nor a purge of the session that owns it -- and no write may use
``TransactWriteItems`` (issue 13). The marks it must respect live in other items (the
tool's ``INVALIDATED`` mark, the session's purge tombstone at ``META``), so one
conditional write cannot check them; instead every entry goes through three steps:

1. **stage**: the owner record (in the session's partition, where erasure finds the
   entry) and the entry itself, marked ``pending`` (a ``get`` never serves a pending
   entry), are written at once. The entry's write is conditional on its own item: only
   over an older entry or tombstone (``created < :created``) or its own earlier staging
   (a redelivery that stopped half-way);
2. **check**: one consistent ``BatchGetItem`` reads the marks of the staged entries'
   tools and the ``META`` items of their sessions;
3. **commit**: the one conditional ``UpdateItem`` that removes ``pending`` (only while
   the item is still this staging) makes the entry visible; an entry whose tool was
   invalidated at or after ``created``, or whose session was purged, is withdrawn
   instead: stripped to a content-free item (and, for a purge, an owner record still
   there is replaced by a content-free one, like the purge's own tombstones).

Why it holds without atomicity: ``ToolCache.invalidate(tool)`` writes its mark *before*
it queries and deletes the tool's entries, and the projector stages *before* it reads
the mark. Either the staged entry is there when the invalidation queries (it is
deleted, and the commit's condition then fails) or the staging came after the mark, so
the check reads the mark and withdraws. The same goes for a purge: it writes its
tombstone before its last read of the session's partition, which then finds the owner
record and deletes the entry. A reader (``ToolCache.get``) needs no transaction either:
a pending entry, a tombstone or a deleted one is a miss.

Example:
    ```python
    from eventstore.cache_commit import write_tool_entries

    written = await write_tool_entries(db, "agent_sessions", entries)
    ```
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import ConditionFailedError, ThrottledError
from .keys import INVALIDATED_SK, META_SK, session_pk
from .records import AttrMap
from .tool_entries import MARK_TTL_SECONDS, ToolCacheEntry, encode_tool_entry, owner_record
from .viewbatch import BATCH_GET_KEYS
from .viewbatch import _get_all as batch_get_consistent

if TYPE_CHECKING:
    from .client import DynamoClient

T = TypeVar("T")
PENDING = "pending"
# an entry whose ``created`` is no string (a table writer's) is replaced like an older one
STAGE_CONDITION = ("attribute_not_exists(pk) OR NOT attribute_type(#c, :str) OR #c < :created "
                   "OR (#c = :created AND attribute_exists(#p))")


async def write_tool_entries(
    db: DynamoClient,
    table_name: str,
    entries: Sequence[ToolCacheEntry],
    *,
    limit: asyncio.Semaphore | None = None,
    batch_reads: bool = True,
) -> int:
    """Stage, check and commit ``entries`` (see the module); return how many are visible.

    Requests: a ``PutItem`` per owner record and an ``UpdateItem`` per entry, sent
    together; one consistent ``BatchGetItem`` (or, with ``batch_reads=False``, a
    ``GetItem`` per mark, sent together); an ``UpdateItem`` per entry to commit or
    withdraw it. Each write is a single item, so an entry of up to 1 KB costs 3 WCU (a
    transaction of the entry, its owner record and two checks cost 8). The actions are
    those an application's policy already grants on its own partitions.

    Args:
        db: DynamoDB client adapter.
        table_name: The convlog table.
        entries: The entries to write (owned or not).
        limit: Bounds the requests in flight (the projector's connection pool).
        batch_reads: Read the marks with ``BatchGetItem`` (the projector); ``False``
            reads each with ``GetItem`` (an application: a tenant's policy grants
            ``GetItem`` on its sessions and on its cache scope, one at a time).

    Raises:
        ThrottledError: The marks stayed unread after the batch retries.
    """
    if not entries:
        return 0

    async def bounded(call: Awaitable[T]) -> T:
        if limit is None:
            return await call
        async with limit:
            return await call

    records = [r for r in map(owner_record, entries) if r is not None]
    outcome = await asyncio.gather(
        *(bounded(_stage(db, table_name, e)) for e in entries),
        *(bounded(db.call("put_item", TableName=table_name, Item=r)) for r in records),
    )
    staged = [e for e, ok in zip(entries, outcome[: len(entries)], strict=True) if ok]
    if not staged:
        return 0
    blocked = await _blocked(db, table_name, staged, bounded, batch_reads=batch_reads)
    done = await asyncio.gather(*(
        bounded(_withdraw(db, table_name, e, purged=reason == "purged") if reason
                else _commit(db, table_name, e))
        for e, reason in ((e, blocked.get(id(e))) for e in staged)
    ))
    return sum(done)


async def _stage(db: DynamoClient, table_name: str, entry: ToolCacheEntry) -> bool:
    """Write ``entry`` as pending over an older entry or tombstone; ``False`` if in the way."""
    item = encode_tool_entry(entry)
    names = {"#o": "output", "#c": "created", "#h": "hits", "#t": "ttl", "#s": "session",
             "#i": "call_id", "#u": "user", "#p": PENDING}
    values: AttrMap = {":o": item["output"], ":created": item["created"], ":zero": {"N": "0"},
                       ":str": {"S": "S"}}
    sets = ["#o = :o", "#c = :created", "#h = if_not_exists(#h, :zero)", "#p = :created"]
    removes: list[str] = ["invalidated"]
    for attr, placeholder in (("ttl", "#t"), ("session", "#s"), ("call_id", "#i"),
                              ("user", "#u")):
        if attr in item:
            values[f":{attr}"] = item[attr]
            sets.append(f"{placeholder} = :{attr}")
        else:
            removes.append(placeholder)
    try:
        await db.call(
            "update_item", TableName=table_name, Key=entry.key,
            UpdateExpression="SET " + ", ".join(sets) + " REMOVE " + ", ".join(removes),
            ConditionExpression=STAGE_CONDITION,
            ExpressionAttributeNames=names, ExpressionAttributeValues=values,
        )
    except ConditionFailedError:
        return False  # a newer result, a later invalidation tombstone, or a purge's
    return True


async def batch_write(db: DynamoClient, table_name: str, requests: list[dict[str, Any]]) -> None:
    """One ``BatchWriteItem`` (25 requests at most), asking again for unprocessed ones.

    Raises:
        ThrottledError: Requests stayed unprocessed after 8 tries.
    """
    pause = 0.02
    for _ in range(8):
        response = await db.call("batch_write_item", RequestItems={table_name: requests})
        requests = response.get("UnprocessedItems", {}).get(table_name, [])
        if not requests:
            return
        await asyncio.sleep(pause)
        pause *= 2
    raise ThrottledError(f"{len(requests)} tool-cache writes stayed unprocessed")


async def _blocked(
    db: DynamoClient, table_name: str, staged: list[ToolCacheEntry], bounded: Any,
    *, batch_reads: bool,
) -> dict[int, str]:
    """Which staged entries an invalidation or a purge is in the way of (by ``id``)."""
    keys: dict[tuple[str, str], AttrMap] = {}
    for entry in staged:
        pk = entry.key["pk"]["S"]
        keys[(pk, INVALIDATED_SK)] = {"pk": {"S": pk}, "sk": {"S": INVALIDATED_SK}}
        if entry.session_id is not None:
            spk = session_pk(entry.session_id)
            keys[(spk, META_SK)] = {"pk": {"S": spk}, "sk": {"S": META_SK}}
    wanted = list(keys.values())
    found: dict[tuple[str, str], AttrMap] = {}
    reads = [bounded(batch_get_consistent(db, table_name, wanted[i : i + BATCH_GET_KEYS]))
             for i in range(0, len(wanted), BATCH_GET_KEYS)] if batch_reads else [
        bounded(_get(db, table_name, key)) for key in wanted]
    for items in await asyncio.gather(*reads):
        for item in items:
            found[(item["pk"]["S"], item["sk"]["S"])] = item
    blocked: dict[int, str] = {}
    for entry in staged:
        meta = found.get((session_pk(entry.session_id), META_SK)) if entry.session_id else None
        mark = found.get((entry.key["pk"]["S"], INVALIDATED_SK))
        if meta is not None and "purged" in meta:
            blocked[id(entry)] = "purged"
        elif mark is not None and mark.get("at", {}).get("S", "") >= entry.created:
            blocked[id(entry)] = "invalidated"
    return blocked


async def _get(db: DynamoClient, table_name: str, key: AttrMap) -> list[AttrMap]:
    response = await db.call("get_item", TableName=table_name, Key=key, ConsistentRead=True)
    return [response["Item"]] if "Item" in response else []


def _staged_condition(
    entry: ToolCacheEntry, names: dict[str, str] | None = None
) -> dict[str, Any]:
    """Only while the item is still this entry's staging."""
    return {"ConditionExpression": "#p = :created",
            "ExpressionAttributeNames": {"#p": PENDING, **(names or {})},
            "ExpressionAttributeValues": {":created": {"S": entry.created}}}


async def _commit(db: DynamoClient, table_name: str, entry: ToolCacheEntry) -> int:
    try:
        await db.call("update_item", TableName=table_name, Key=entry.key,
                      UpdateExpression="REMOVE #p", **_staged_condition(entry))
    except ConditionFailedError:
        return 0  # deleted by an invalidation or a purge, or replaced by a newer result
    return 1


async def _withdraw(
    db: DynamoClient, table_name: str, entry: ToolCacheEntry, *, purged: bool
) -> int:
    """Strip the staged entry to a content-free item (``created``, ``ttl``): a miss.

    For a purged session its owner record is replaced by a content-free one too. Both
    are writes an application may send (no ``DeleteItem`` on sessions).
    """
    with contextlib.suppress(ConditionFailedError):
        await db.call("update_item", TableName=table_name, Key=entry.key,
                      UpdateExpression="REMOVE #p, #o, #s, #u, #i",
                      **_staged_condition(entry, {"#o": "output", "#s": "session",
                                                  "#u": "user", "#i": "call_id"}))
    record = owner_record(entry)
    if purged and record is not None:  # nothing of a purged session stays behind
        with contextlib.suppress(ConditionFailedError):  # the purge deleted it already
            await db.call("put_item", TableName=table_name, Item={
                "pk": record["pk"], "sk": record["sk"], "purged": {"N": "0"},
                "ttl": {"N": str(int(time.time()) + MARK_TTL_SECONDS)}},
                ConditionExpression="attribute_exists(pk)")
    return 0
