"""The derived views of a session (meta, snapshot) and their purge tombstones.

The tool-cache entry codec lives in ``eventstore.tool_entries`` and is re-exported here.

The projector (``stream_handlers``) keeps these views; ``get_items``, ``ToolCache`` and
``list_sessions`` read them. This module holds their item codecs -- pure, importable
without botocore, so ``projections`` can build the same values -- and the conditional
writes that make a projection idempotent:

* session views (snapshot, meta item) are each written with the condition
  ``attribute_not_exists(pk) OR seq < :seq`` (a snapshot too large for one item first
  writes its payload -- to S3, or to parts addressed by its digest -- and then the one
  conditional put that makes it visible; no transaction); a redelivered or replayed
  batch finds ``seq`` already there and changes nothing;
* a tool-cache entry is staged guarded by ``created < :created`` (the newest result
  wins, a replay changes nothing, the hit counter survives), checked against the tool's
  invalidation mark and the session's purge tombstone, then committed -- no
  transaction, see ``cache_commit``;
* ``convlog purge`` leaves a content-free tombstone at ``META`` and ``SNAPSHOT``
  (``purged`` = the last seq erased, ``seq`` = the largest possible, ``ttl`` = 25 h):
  no conditional view write can pass it, so no later delivery of the stream re-creates
  the views, and ``read_views`` reports the session as purged.

Example:
    ```python
    from eventstore.views import read_views, write_session_views

    state = await read_views(db, "agent_sessions", "s1")
    await write_session_views(db, "agent_sessions", "s1", snapshot, meta, ttl=None)
    ```
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .chunks import chunk_sk, encode_chunk, seal
from .errors import ConditionFailedError, CorruptEventError, PayloadTooLargeError, StorageError
from .fold import Sealed, Snapshot
from .keys import (
    MAX_SEQ,
    META_SK,
    SNAPSHOT_SK,
    is_part_sk,
    session_pk,
    user_index_problem,
    user_pk,
    whole_number,
)
from .limits import DEFAULT_MAX_STATE_BYTES
from .records import MAX_PAYLOAD_BYTES, AttrMap, object_ref
from .snapshots import decode_head, decode_snapshot, encode_head, is_chunked, tail_body
from .tool_entries import (  # re-exported: the view codecs in one place
    MARK_TTL_SECONDS,
    MAX_TOOL_OUTPUT_BYTES,
    ToolCacheEntry,
    arguments_hash,
    canonical_arguments,
    decode_tool_entry,
    encode_tool_entry,
    tool_output_fits,
)

__all__ = [
    "MAX_TOOL_OUTPUT_BYTES", "SessionMeta", "ToolCacheEntry", "ViewState", "arguments_hash",
    "canonical_arguments", "decode_meta", "decode_tool_entry", "encode_meta",
    "encode_tool_entry", "purge_tombstones", "read_views", "tool_output_fits",
    "write_session_views",
]

if TYPE_CHECKING:
    from .client import DynamoClient
    from .payloads import PayloadStore

# Replace an older view, an expired one (its session restarts at seq 1), a table writer's.
VIEW_CONDITION = ("attribute_not_exists(pk) OR NOT attribute_type(seq, :num) OR seq < :seq "
                  "OR (attribute_type(#ttl, :num) AND #ttl < :now)")  # types checked first
META_VERSION = 1
CHUNK_WRITES = 8  # chunk puts in flight at once (a state sealed anew writes many)


@dataclass(frozen=True)
class SessionMeta:
    """The per-session summary indexed by user (``sk = META``).

    Example:
        ```python
        meta = decode_meta(item)
        print(meta.title, meta.item_count, meta.last_active)
        ```
    """

    session_id: str
    seq: int
    created: str
    last_active: str
    item_count: int
    user_id: str | None = None
    title: str | None = None
    ttl: int | None = None
    usage: tuple[int, int, int, int] = (0, 0, 0, 0)
    """Every ``usage_recorded`` of the session summed: requests, input, output and total
    tokens."""
    branch_id: str | None = None
    """Set when the partition is a branch (its first event is ``branch_created``)."""


@dataclass(frozen=True)
class ViewState:
    """What the projector reads before applying a batch: the session's current views.

    Example:
        ```python
        state = await read_views(db, "agent_sessions", "s1")
        base = state.snapshot.seq if state.consistent and state.snapshot else 0
        ```
    """

    snapshot: Snapshot | None = None
    meta: SessionMeta | None = None
    part_keys: tuple[str, ...] = ()
    purged: bool = False

    @property
    def consistent(self) -> bool:
        """Whether snapshot and meta exist and describe the same ``seq``."""
        return (
            self.snapshot is not None
            and self.meta is not None
            and self.snapshot.seq == self.meta.seq
        )


def encode_meta(meta: SessionMeta) -> AttrMap:
    """Return the ``META`` item of a session (indexed by user when the user is known)."""
    item: AttrMap = {
        "pk": {"S": session_pk(meta.session_id)},
        "sk": {"S": META_SK},
        "v": {"N": str(META_VERSION)},
        "seq": {"N": str(meta.seq)},
        "created": {"S": meta.created},
        "last_active": {"S": meta.last_active},
        "item_count": {"N": str(meta.item_count)},
    }
    if meta.title is not None:
        item["title"] = {"S": meta.title}
    if any(meta.usage):
        item["usage"] = {"L": [{"N": str(n)} for n in meta.usage]}
    if meta.ttl is not None:
        item["ttl"] = {"N": str(meta.ttl)}
    if meta.branch_id is not None:
        item["branch_id"] = {"S": meta.branch_id}
    if meta.user_id is not None:
        item["user_id"] = {"S": meta.user_id}
    if meta.user_id is not None and user_index_problem(meta.user_id, meta.session_id) is None:
        item["gsi1pk"] = {"S": user_pk(meta.user_id)}
        item["gsi1sk"] = {"S": f"{meta.last_active}#{meta.session_id}"}
    return item


def decode_meta(item: AttrMap) -> SessionMeta:
    """Rebuild ``SessionMeta`` from its item.

    Raises:
        CorruptEventError: The item is malformed.
    """
    try:
        return SessionMeta(
            session_id=item["pk"]["S"].split("#", 1)[1],
            seq=int(item["seq"]["N"]),
            created=item["created"]["S"],
            last_active=item["last_active"]["S"],
            item_count=int(item["item_count"]["N"]),
            user_id=item["user_id"]["S"] if "user_id" in item else None,
            title=item["title"]["S"] if "title" in item else None,
            ttl=int(item["ttl"]["N"]) if "ttl" in item else None,
            usage=_usage_of(item),
            branch_id=item["branch_id"]["S"] if "branch_id" in item else None,
        )
    except (KeyError, ValueError, IndexError) as exc:
        raise CorruptEventError(f"session meta item is malformed: {exc!r}") from exc


def _usage_of(item: AttrMap) -> tuple[int, int, int, int]:
    if "usage" not in item:
        return (0, 0, 0, 0)
    values = [int(v["N"]) for v in item["usage"]["L"]]
    if len(values) != 4:
        raise ValueError(f"usage holds {len(values)} numbers, expected 4")
    return (values[0], values[1], values[2], values[3])


async def read_views(
    db: DynamoClient, table_name: str, session_id: str, *, payloads: PayloadStore | None = None
) -> ViewState:
    """Read a session's meta item and snapshot (with parts) in one consistent ``Query``.

    An unusable snapshot or meta item reads as absent (the projector rebuilds from the
    events); one kept in S3 is fetched from ``payloads`` and checked against its digest.
    """
    items = await read_view_items(db, table_name, session_id)
    return await view_state(*items, payloads=payloads, whole=True)


async def read_view_items(
    db: DynamoClient, table_name: str, session_id: str
) -> tuple[AttrMap | None, AttrMap | None, list[AttrMap]]:
    """The raw meta item, snapshot head and snapshot parts/chunks (one consistent ``Query``)."""
    head: AttrMap | None = None
    parts: list[AttrMap] = []
    meta_item: AttrMap | None = None
    async for item in db.items(
        "query", TableName=table_name, KeyConditionExpression="pk = :pk AND sk >= :meta",
        ExpressionAttributeValues={":pk": {"S": session_pk(session_id)}, ":meta": {"S": META_SK}},
        ConsistentRead=True,
    ):
        sk = item["sk"]["S"]
        if sk == META_SK:
            meta_item = item
        elif sk == SNAPSHOT_SK:
            head = item
        elif sk.startswith(SNAPSHOT_SK) and is_part_sk(sk):
            parts.append(item)
    return meta_item, head, parts


async def view_state(
    meta_item: AttrMap | None, head: AttrMap | None, parts: Sequence[AttrMap] = (),
    *, payloads: PayloadStore | None = None, whole: bool = False,
) -> ViewState:
    """Decode a session's views from their items; an unusable view reads as absent.

    A chunked snapshot decodes to its tail and sealed summary (what the projector builds
    on), or with ``whole`` to every entry (``parts`` then holds its chunks).
    """
    part_keys = tuple(sorted(p["sk"]["S"] for p in parts))
    ttl = whole_number(meta_item.get("ttl")) if meta_item else None  # a table writer's: none
    if meta_item is not None and "purged" in meta_item and (ttl or 0) > time.time():
        return ViewState(part_keys=part_keys, purged=True)
    snapshot = meta = None
    try:
        if head is not None:
            snapshot = await _decode(head, parts, payloads, whole)
        meta = decode_meta(meta_item) if meta_item is not None else None
    except CorruptEventError:
        return ViewState(part_keys=part_keys)
    return ViewState(snapshot, meta, part_keys)


async def _decode(
    head: AttrMap, parts: Sequence[AttrMap], payloads: PayloadStore | None, whole: bool
) -> Snapshot:
    """A snapshot from its items, fetching what lives in S3 (when there is a bucket)."""
    if is_chunked(head) and not whole:
        return decode_head(head)
    fetched: dict[str, bytes] = {}
    for item in [head, *parts] if payloads is not None else []:
        ref = object_ref(item)
        if ref is not None:
            fetched[item["sk"]["S"]] = await payloads.get(  # type: ignore[union-attr]
                ref[0], ref[1], ref[2], max_bytes=DEFAULT_MAX_STATE_BYTES)
    return decode_snapshot(head, parts, raw=fetched.get(head["sk"]["S"]), fetched=fetched)


async def write_session_views(
    db: DynamoClient,
    table_name: str,
    session_id: str,
    snapshot: Snapshot,
    meta: SessionMeta,
    *,
    ttl: int | None,
    stale_part_keys: Sequence[str] = (),
    payloads: PayloadStore | None = None,
    replaced: Sealed | None = None,
) -> bool:
    """Write the snapshot and the meta item of a session, each only if it is newer.

    ``snapshot.entries`` is the tail when ``snapshot.sealed`` is set (else the whole
    state). Once the tail is too long, its oldest entries are sealed into new chunks
    (``eventstore.chunks.seal``): the chunks are written first (a chunk too large for
    one item goes to S3 with ``payloads``, else into parts), then the ``SNAPSHOT`` item
    (the commit: one conditional ``PutItem``, the tail inline) and the meta item (a
    second conditional ``PutItem``) at once. (If only one lands, the two views disagree
    on ``seq`` and the next batch rebuilds both from the events.) Older items
    (``stale_part_keys``, from ``read_views``: parts of a version 2 snapshot, chunks of
    an older epoch) that the new snapshot does not use are deleted, best effort (the
    projector role has no ``DeleteItem``: ``convlog rebuild`` / ``purge`` remove them).
    When the new snapshot starts a new epoch, the chunks of ``replaced`` (the sealed
    summary of the snapshot it replaces) are overwritten with content-free tombstones
    whose ``ttl`` has passed (``PutItem``; DynamoDB's TTL then deletes them), so a
    full read that meets them reads a few bytes each.

    Returns:
        ``True`` when the snapshot was written, ``False`` when the stored one is already
        at ``snapshot.seq`` or later (a redelivery or a replay).

    Raises:
        PayloadTooLargeError: A chunk cannot fit in the table and there is no bucket.
    """
    body = tail_body(snapshot)
    state, chunks = seal(snapshot, tail_bytes=body.size)
    if chunks:
        body = tail_body(state)
    items: list[AttrMap] = []
    for chunk in chunks:
        key = None
        if payloads is not None and payloads.wants(chunk.body):
            left = None if ttl is None else max(1, ttl - int(time.time()))
            key = await payloads.put(session_id, chunk.body, ttl_seconds=left)
        elif len(chunk.body.data) > MAX_PAYLOAD_BYTES:
            raise PayloadTooLargeError(
                f"a snapshot chunk of session {session_id!r} is {len(chunk.body.data):,} "
                f"bytes stored; give the projector a payload bucket to snapshot it")
        items.extend(encode_chunk(session_id, chunk, object_key=key))
    for start in range(0, len(items), CHUNK_WRITES):
        await asyncio.gather(*(db.call("put_item", TableName=table_name, Item=item)
                               for item in items[start : start + CHUNK_WRITES]))
    written, _ = await asyncio.gather(
        _put_newer(db, table_name, [encode_head(session_id, state, ttl=ttl, body=body)],
                   snapshot.seq),
        _put_newer(db, table_name, [encode_meta(meta)], meta.seq),
    )
    if written and replaced is not None and (
        state.sealed is None or state.sealed.epoch != replaced.epoch
    ):
        keys = [chunk_sk(replaced.epoch, index) for index in range(replaced.chunks)]
        await _empty(db, table_name, session_id, keys, {})
    kept = {item["sk"]["S"] for item in items}
    stale = [sk for sk in stale_part_keys if written and sk not in kept]
    await _empty(db, table_name, session_id, stale, _replace_condition(snapshot.seq))
    return written


async def _empty(
    db: DynamoClient, table_name: str, session_id: str, keys: Sequence[str],
    condition: dict[str, Any],
) -> None:
    """Overwrite older views' items with small expired ones (puts only, best effort).

    The items are the chunks of a replaced epoch or the parts of a version 2 snapshot;
    the projector's role has no ``DeleteItem``.
    """
    pk, now = session_pk(session_id), str(int(time.time()))
    for start in range(0, len(keys), CHUNK_WRITES):
        results = await asyncio.gather(*(
            db.call("put_item", TableName=table_name, Item={
                "pk": {"S": pk}, "sk": {"S": sk}, "ttl": {"N": now}, "stale": {"BOOL": True}},
                **condition)
            for sk in keys[start : start + CHUNK_WRITES]), return_exceptions=True)
        for result in results:  # not written (a newer view owns it) costs reads, not truth
            if isinstance(result, BaseException) and not isinstance(result, StorageError):
                raise result


def purge_tombstones(session_id: str, through_seq: int, now: float) -> list[AttrMap]:
    """Content-free items for the ``META`` and ``SNAPSHOT`` keys of a purged session.

    ``seq`` is the largest possible, so ``seq < :seq`` never passes; ``ttl`` is
    ``MARK_TTL_SECONDS`` away, after which no stream record of the erased events exists.
    """
    return [
        {"pk": {"S": session_pk(session_id)}, "sk": {"S": sk},
         "purged": {"N": str(through_seq)}, "seq": {"N": str(MAX_SEQ)},
         "ttl": {"N": str(int(now) + MARK_TTL_SECONDS)}}
        for sk in (META_SK, SNAPSHOT_SK)
    ]


def _replace_condition(seq: int) -> dict[str, Any]:
    """Request parameters that let a view at ``seq`` replace (or delete) an older one."""
    return {
        "ConditionExpression": VIEW_CONDITION,
        "ExpressionAttributeNames": {"#ttl": "ttl"},
        "ExpressionAttributeValues": {
            ":seq": {"N": str(seq)}, ":now": {"N": str(int(time.time()))}, ":num": {"S": "N"},
        },
    }


async def _put_newer(db: DynamoClient, table_name: str, items: list[AttrMap], seq: int) -> bool:
    """Write a view's parts, then its head: the head's conditional put is the commit.

    Parts are addressed by the payload's digest and invisible until a head names it; a
    part already owned by a newer view (same content) is left alone.
    """
    condition = _replace_condition(seq)
    for part in items[1:]:
        with contextlib.suppress(ConditionFailedError):
            await db.call("put_item", TableName=table_name, Item=part, **condition)
    try:
        await db.call("put_item", TableName=table_name, Item=items[0], **condition)
    except ConditionFailedError:
        return False
    return True
