"""Erase one user's content from a shared session while its hash chain still verifies.

Hash schema 2 links an event to its predecessor through the *digest* of its payload
(``payload_sha256``, stored on the item), not the payload itself. So the payload of each
event the user wrote can be removed -- ``enc = "erased"``, no ``payload``, no parts --
and ``verify`` still checks every link from the stored digest. An erased
``items_added`` keeps the number of its items and their roles (each reads back as
``{"role": ..., "content": "[erased]"}``), so later pops by other users still remove
the item they removed; an erased ``item_popped`` keeps nothing of the popped item.

Events of hash schema 1 hash their payload inline: they cannot be erased this way
(``erase_user_content`` refuses before any write; purge the whole session instead).

What else goes: the cache entries the user's runs own in the session, the user's
record in the ``by_user`` index, and the views, which are recomputed at once from the
erased events and written over the old ones, so no delivery of the stream (which still
holds the original images for 24 h) is ever newer than them.

Example:
    ```python
    erased = await erase_user_content(db, "agent_sessions", "team-chat", "alice")
    print(erased.events, erased.cache_entries)
    ```
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from eventstore.client import DynamoClient
from eventstore.errors import (
    ConditionFailedError,
    CorruptEventError,
    InvalidInputError,
    PayloadStoreRequiredError,
)
from eventstore.events import ItemsAdded, ItemsReplaced, UsageRecorded
from eventstore.keys import (
    CACHE_REF_PREFIX,
    META_SK,
    SNAPSHOT_SK,
    is_event_sk,
    is_part_sk,
    seq_of,
    session_pk,
    whole_number,
)
from eventstore.limits import DEFAULT_MAX_STATE_BYTES
from eventstore.log import EventLog
from eventstore.payloads import PayloadStore
from eventstore.records import (
    ERASED_ENCODING,
    OBJECT_ATTR,
    ROLES,
    AttrMap,
    decode_event,
    object_ref,
)
from eventstore.snapshots import encode_snapshot
from eventstore.user_usage import forget_usage
from eventstore.views import encode_meta
from projections.session import project_session

from .purge import CacheRef, delete_owned_entry, write_batch

# the event types that carry a user's content (the others hold ids and counts only)
ERASABLE = frozenset({"items_added", "items_replaced", "item_popped", "usage_recorded"})


@dataclass(frozen=True)
class ContentErasure:
    """What ``erase_user_content`` erased in one session.

    Example:
        ```python
        result = await erase_user_content(db, "agent_sessions", "team-chat", "alice")
        print(result.events, result.cache_entries)
        ```
    """

    session_id: str
    events: int
    cache_entries: int
    through: int = 0
    """The last seq of the user's events erased (what a signed record must cover)."""


@dataclass(frozen=True)
class PreparedErasure:
    """What ``prepare_erasure`` read and checked of one session; nothing written yet."""

    session_id: str
    user_id: str
    items: list[AttrMap]
    heads: list[AttrMap]
    shapes: dict[str, AttrMap]  # what each event still to erase keeps, by its key

    @property
    def through(self) -> int:
        """The last seq of the user's events it will erase (what a record must cover)."""
        return max((seq_of(h["sk"]["S"]) for h in self.heads), default=0)


async def erase_user_content(
    db: DynamoClient, table: str, session_id: str, user_id: str,
    *, payloads: PayloadStore | None = None,
) -> ContentErasure:
    """Remove the payload of every event ``user_id`` wrote in ``session_id``.

    An event whose payload lives in the payload bucket loses its reference, and, with
    ``payloads``, the object too (unless a kept event of the session has the same
    content); the old snapshot's object, which folds the user's content, goes as well.
    ``prepare_erasure`` then ``apply_erasure``: every read and check before any write.

    Raises:
        InvalidInputError: An event of the user is of hash schema 1 (nothing written).
        CorruptEventError: An event of the user has no schema version (nothing written).
        PayloadStoreRequiredError: An event of the user keeps its payload in S3 and no
            ``payloads`` is given (nothing written).
        ConditionFailedError: An event changed while it was being erased.
    """
    prepared = await prepare_erasure(db, table, session_id, user_id, payloads=payloads)
    return await apply_erasure(db, table, prepared, payloads=payloads)


async def prepare_erasure(
    db: DynamoClient, table: str, session_id: str, user_id: str,
    *, payloads: PayloadStore | None = None,
) -> PreparedErasure:
    """Read the session and check that the user's content can be erased; write nothing.

    Raises:
        InvalidInputError: An event of the user is of hash schema 1.
        CorruptEventError: An event of the user has no schema version.
        PayloadStoreRequiredError: An event of the user keeps its payload in S3 and no
            ``payloads`` is given.
    """
    items = [i async for i in db.items(
        "query", TableName=table, KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": session_pk(session_id)}}, ConsistentRead=True,
    )]
    heads = [i for i in items if is_event_sk(i["sk"]["S"]) and not is_part_sk(i["sk"]["S"])
             and i.get("user_id", {}).get("S") == user_id
             and i.get("type", {}).get("S") in ERASABLE]
    versions = {seq_of(h["sk"]["S"]): whole_number(h.get("v")) for h in heads}
    malformed = [seq for seq, v in versions.items() if v is None]
    if malformed:  # no writer makes them (a table writer can): nothing is written
        raise CorruptEventError(
            f"session {session_id!r}: events {malformed[:5]} of {user_id!r} have no schema "
            "version; convlog verify names what is wrong")
    old = [seq for seq, v in versions.items() if v is not None and v < 2]
    if old:
        raise InvalidInputError(
            f"session {session_id!r}: events {old[:5]} of {user_id!r} use hash schema 1, "
            "which hashes the content inline; purge the whole session instead"
        )
    mine = {h["sk"]["S"] for h in heads}
    part_items: dict[str, list[AttrMap]] = {}
    for i in items:
        sk = i["sk"]["S"]
        if is_event_sk(sk) and is_part_sk(sk) and sk.rsplit("#", 1)[0] in mine:
            part_items.setdefault(sk.rsplit("#", 1)[0], []).append(i)
    todo = [h for h in heads if h.get("enc", {}).get("S") != ERASED_ENCODING]
    shapes = {h["sk"]["S"]: await _shape_of(h, part_items.get(h["sk"]["S"], []), payloads)
              for h in todo}
    return PreparedErasure(session_id, user_id, items, heads, shapes)


async def apply_erasure(
    db: DynamoClient, table: str, prepared: PreparedErasure,
    *, payloads: PayloadStore | None = None,
) -> ContentErasure:
    """Erase what ``prepare_erasure`` found (``ConditionFailedError``: an event changed)."""
    session_id, user_id = prepared.session_id, prepared.user_id
    items, heads = prepared.items, prepared.heads
    now = int(time.time())
    mine = {h["sk"]["S"] for h in heads}
    todo = [h for h in heads if h["sk"]["S"] in prepared.shapes]
    shapes = prepared.shapes
    for head in todo:
        await _erase_event(db, table, head, shapes[head["sk"]["S"]], now)
    parts = [{"DeleteRequest": {"Key": {"pk": i["pk"], "sk": i["sk"]}}} for i in items
             if is_event_sk(i["sk"]["S"]) and is_part_sk(i["sk"]["S"])
             and i["sk"]["S"].rsplit("#", 1)[0] in mine]
    records = [i for i in items if i["sk"]["S"].startswith(CACHE_REF_PREFIX)
               and i.get("user_id", {}).get("S") == user_id and "ref_pk" in i]
    entries = 0
    for record in records:
        entries += await delete_owned_entry(db, table, CacheRef(
            record["ref_pk"]["S"], record["ref_sk"]["S"], session_id))
    parts += [{"DeleteRequest": {"Key": {"pk": r["pk"], "sk": r["sk"]}}} for r in records]
    for start in range(0, len(parts), 25):
        await write_batch(db, table, parts[start : start + 25])
    stale = [i["sk"]["S"] for i in items if i["sk"]["S"].startswith(SNAPSHOT_SK)]
    await _rewrite_views(db, table, session_id, stale)
    await forget_usage(db, table, {session_id: [user_id]})  # its totals stop naming it
    if payloads is not None:  # nothing references these objects any more
        kept = {ref[0] for i in items if i["sk"]["S"] not in mine and is_event_sk(i["sk"]["S"])
                and (ref := object_ref(i)) is not None}
        gone = {ref[0] for i in [*heads, *(i for i in items if i["sk"]["S"] == SNAPSHOT_SK)]
                if (ref := object_ref(i)) is not None}
        await payloads.delete(sorted(gone - kept))
    return ContentErasure(session_id, len(heads), entries, prepared.through)


async def _erase_event(
    db: DynamoClient, table: str, head: AttrMap, shape: AttrMap, now: int
) -> None:
    kept: dict[str, Any] = {":e": {"S": ERASED_ENCODING}, ":now": {"N": str(now)},
                            ":h": head["hash"]}
    sets = ["enc = :e", "erased = :now"]
    for name, value in shape.items():  # what the placeholder payload keeps (no content)
        kept[":" + name] = value
        sets.append(f"{name} = :{name}")
    try:
        await db.call(
            "update_item", TableName=table, Key={"pk": head["pk"], "sk": head["sk"]},
            UpdateExpression="SET " + ", ".join(sets)
            + f" REMOVE payload, parts, gsi1pk, gsi1sk, {OBJECT_ATTR}",
            ConditionExpression="#h = :h",
            ExpressionAttributeNames={"#h": "hash"},
            ExpressionAttributeValues=kept,
        )
    except ConditionFailedError as exc:
        raise ConditionFailedError(
            f"{head['pk']['S']} {head['sk']['S']} changed during the erasure; run it again"
        ) from exc


async def _shape_of(
    head: AttrMap, parts: list[AttrMap], payloads: PayloadStore | None
) -> AttrMap:
    """What an erased event keeps so it still parses (``records.erased_payload``).

    The roles of its items (``items_added``, ``items_replaced``), how many items a
    replacement replaced, the turn a usage event counted: shape, never content.

    Raises:
        PayloadStoreRequiredError: The payload is in S3 and there is no ``payloads``.
    """
    raw = None
    ref = object_ref(head)
    if ref is not None:
        if payloads is None:
            raise PayloadStoreRequiredError(
                f"{head['pk']['S']} {head['sk']['S']} keeps its payload in the payload "
                "bucket: pass the bucket (--bucket or CONVLOG_BUCKET) to erase it")
        raw = await payloads.get(*ref, max_bytes=DEFAULT_MAX_STATE_BYTES)
    event = decode_event(head, parts, raw=raw).event
    shape: AttrMap = {}
    if isinstance(event, ItemsAdded | ItemsReplaced):
        shape["erased_roles"] = {"L": [
            {"S": r if (r := i.get("role")) in ROLES else "assistant"} for i in event.items]}
    if isinstance(event, ItemsReplaced) and event.replaced is not None:
        shape["erased_replaced"] = {"N": str(event.replaced)}
    if isinstance(event, UsageRecorded):
        shape["erased_turn"] = {"N": str(event.turn)}
    return shape


async def _rewrite_views(
    db: DynamoClient, table: str, session_id: str, stale_snapshot_keys: list[str]
) -> None:
    """Recompute snapshot and meta from the erased events and write them over the old ones."""
    events = [e async for e in EventLog(db, table).iter_events(session_id)]
    result = project_session(session_id, None, None, events, tool_ttl_seconds=0)
    pk = {"S": session_pk(session_id)}
    if result is None:
        for sk in [META_SK, *stale_snapshot_keys]:
            await db.call("delete_item", TableName=table, Key={"pk": pk, "sk": {"S": sk}})
        return
    items = [*encode_snapshot(session_id, result.snapshot, ttl=result.ttl),
             encode_meta(result.meta)]
    for item in items:  # unconditional: these views must replace whatever is there
        await db.call("put_item", TableName=table, Item=item)
    kept = {i["sk"]["S"] for i in items}
    for sk in stale_snapshot_keys:
        if sk not in kept:
            await db.call("delete_item", TableName=table, Key={"pk": pk, "sk": {"S": sk}})
