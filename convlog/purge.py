"""Erasure on request: every item of a session, or of all the sessions of a user.

``plan_purge`` finds what belongs to the sessions, changing nothing, reading only:

* a session: one ``Query`` of its partition (events and their parts, snapshot parts,
  the meta item, and the records of the tool-cache entries it owns);
* a user: one ``Query`` of the ``by_user`` index, which holds the projected meta items
  *and* the record every ``DynamoDBSession`` writes with its first event (so sessions the
  projector has not seen yet are found), then one ``Query`` per session found. Only
  sessions with an event or a cache entry of that user are kept, and a session
  ``<tenant>/...`` only for a user of that tenant;
* ``scan=True`` (``--scan``): a parallel ``Scan`` of the table for the user's items.

``execute_purge`` makes the erasure final. Per session it deletes the owned cache
entries (conditionally: only while they still name the session), then, in batches of 25,
replaces ``META`` and ``SNAPSHOT`` by content-free tombstones that no projector write can
pass (``eventstore.views.purge_tombstones``, 25 h) and deletes everything else. It then
reads the partition again until only the tombstones are left (a writer appending
during the purge ends purged too), and the usage totals stop naming the sessions.

Example:
    ```python
    plan = await plan_purge(db, "agent_sessions", user_id="alice")
    print(plan.counts(), plan.shared())
    await execute_purge(db, "agent_sessions", plan)
    ```
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eventstore.branches import REGISTRY_PREFIX
from eventstore.client import DynamoClient
from eventstore.errors import ConditionFailedError, InvalidInputError, StorageError
from eventstore.history import branch_session_id
from eventstore.keys import (
    CACHE_REF_PREFIX,
    EVENT_PREFIX,
    META_SK,
    SESSION_PREFIX,
    SNAPSHOT_SK,
    is_part_sk,
    seq_of,
    session_id_of,
    session_pk,
    tenant_of,
    user_pk,
    validate_session_id,
)
from eventstore.payloads import PayloadStore
from eventstore.records import AttrMap
from eventstore.table import USER_INDEX
from eventstore.user_usage import forget_usage
from eventstore.views import purge_tombstones

BATCH_SIZE = 25
MAX_BATCH_ATTEMPTS = 10
MAX_ROUNDS = 8
DEFAULT_SEGMENTS = 4
_BACKOFF_BASE = 0.05
_BACKOFF_CAP = 2.0
_ATTRS = {"#pk": "pk", "#sk": "sk", "#u": "user_id", "#rp": "ref_pk", "#rs": "ref_sk",
          "#p": "purged", "#t": "type"}
_PROJECTION = "#pk, #sk, #u, #rp, #rs, #p, #t"

Key = tuple[str, str]


@dataclass(frozen=True)
class CacheRef:
    """A tool-cache entry owned by a purged session (deleted only while it names it)."""

    pk: str
    sk: str
    session_id: str


@dataclass
class PurgePlan:
    """What a purge deletes: keys by session, owned cache entries, and who wrote what.

    Example:
        ```python
        plan = await plan_purge(db, "agent_sessions", session_id="s1")
        print(plan.sessions, plan.counts(), plan.shared())
        ```
    """

    sessions: list[str] = field(default_factory=list)
    keys: list[Key] = field(default_factory=list)
    cache_refs: list[CacheRef] = field(default_factory=list)
    authors: dict[str, Counter[str]] = field(default_factory=dict)
    """Events per user id, per session (``""`` for events without a user)."""
    user_id: str | None = None
    heads: dict[str, int] = field(default_factory=dict)
    spenders: dict[str, set[str]] = field(default_factory=dict)  # users with usage events

    def counts(self) -> Counter[str]:
        """How many items of each kind the plan deletes."""
        kinds = Counter(kind_of(sk) for _, sk in self.keys)
        if self.cache_refs:
            kinds["tool-cache entries"] = len(self.cache_refs)
        return kinds

    def shared(self) -> dict[str, Counter[str]]:
        """Sessions holding events of other users than ``user_id``: other user -> events."""
        if self.user_id is None:
            return {}
        found: dict[str, Counter[str]] = {}
        for session_id, authors in self.authors.items():
            others = Counter({u or "(no user)": n for u, n in authors.items()
                              if u != self.user_id})
            if others:
                found[session_id] = others
        return found

    def without(self, sessions: set[str]) -> PurgePlan:
        """The same plan minus ``sessions`` (erased another way)."""
        return PurgePlan(
            [s for s in self.sessions if s not in sessions],
            [k for k in self.keys if session_id_of(k[0]) not in sessions],
            [r for r in self.cache_refs if r.session_id not in sessions],
            {s: a for s, a in self.authors.items() if s not in sessions},
            self.user_id,
            {s: h for s, h in self.heads.items() if s not in sessions},
            {s: u for s, u in self.spenders.items() if s not in sessions},
        )

    @property
    def empty(self) -> bool:
        """Whether there is nothing to delete."""
        return not self.keys and not self.cache_refs


def kind_of(sk: str) -> str:
    """Name the kind of item a sort key belongs to (for the purge report)."""
    if sk.startswith(EVENT_PREFIX):
        return "event parts" if is_part_sk(sk) else "events"
    if sk.startswith(SNAPSHOT_SK):
        return "snapshots" if sk == SNAPSHOT_SK else "snapshot parts"
    if sk == META_SK:
        return "meta items"
    return "cache records" if sk.startswith(CACHE_REF_PREFIX) else "other items"


async def plan_purge(
    db: DynamoClient,
    table: str,
    *,
    session_id: str | None = None,
    user_id: str | None = None,
    scan: bool = False,
    segments: int = DEFAULT_SEGMENTS,
    on_scanned: Callable[[int], None] | None = None,
) -> PurgePlan:
    """Find every item of one session, or of every session of one user.

    Args:
        db: DynamoDB client adapter.
        table: The convlog table.
        session_id: Erase this session.
        user_id: Erase the sessions of this user.
        scan: Find the user's sessions with a full parallel ``Scan`` (costly: it reads
            the whole table) instead of the index.
        segments: Parallel ``Scan`` segments.
        on_scanned: Called with the number of items each ``Scan`` page read.

    Raises:
        InvalidInputError: Neither or both of ``session_id`` and ``user_id`` given, an
            empty user id, ``scan`` with a session, or fewer than 1 segment.
    """
    if (session_id is None) == (user_id is None):
        raise InvalidInputError("purge needs exactly one of a session id or a user id")
    if session_id is not None:
        if scan:
            raise InvalidInputError("--scan finds a user's sessions; a session needs none")
        candidates = [validate_session_id(session_id)]
    else:
        if not user_id:
            raise InvalidInputError("the user id must not be empty")
        if isinstance(segments, bool) or not isinstance(segments, int) or segments < 1:
            raise InvalidInputError(f"segments must be an int >= 1, got {segments!r}")
        found = await (_scan_for_user(db, table, user_id, segments, on_scanned) if scan
                       else _index_for_user(db, table, user_id))
        tenant = tenant_of(user_id)
        candidates = sorted(s for s in found if tenant_of(s) in (None, tenant))
    plan = PurgePlan(user_id=user_id)
    pending: list[tuple[str, str | None]] = [(sid, user_id) for sid in candidates]
    while pending:
        sid, required = pending.pop(0)
        if sid in plan.sessions:
            continue
        branches = await _add_partition(db, table, plan, sid, require_user=required)
        # the branches of an erased session are partitions of their own: they go with it
        pending += [(b, None) for b in branches if b not in plan.sessions]
    return plan


async def _index_for_user(db: DynamoClient, table: str, user_id: str) -> set[str]:
    return {
        session_id_of(item["pk"]["S"])
        async for item in db.items(
            "query", TableName=table, IndexName=USER_INDEX,
            KeyConditionExpression="gsi1pk = :u",
            ExpressionAttributeValues={":u": {"S": user_pk(user_id)}},
            ProjectionExpression="pk",
        )
        if item["pk"]["S"].startswith(SESSION_PREFIX)
    }


async def _scan_for_user(
    db: DynamoClient, table: str, user_id: str, segments: int,
    on_scanned: Callable[[int], None] | None,
) -> set[str]:
    found: set[str] = set()

    async def segment(n: int) -> None:
        start: AttrMap | None = None
        while True:
            params: dict[str, Any] = {
                "TableName": table, "Segment": n, "TotalSegments": segments,
                "ProjectionExpression": "pk",
                "FilterExpression": "user_id = :u AND begins_with(pk, :s)",
                "ExpressionAttributeValues": {":u": {"S": user_id},
                                              ":s": {"S": SESSION_PREFIX}},
            }
            if start:
                params["ExclusiveStartKey"] = start
            page = await db.call("scan", **params)
            found.update(session_id_of(i["pk"]["S"]) for i in page.get("Items", []))
            if on_scanned:
                on_scanned(int(page.get("ScannedCount", 0)))
            start = page.get("LastEvaluatedKey")
            if not start:
                return

    await asyncio.gather(*(segment(n) for n in range(segments)))
    return found


async def _partition(db: DynamoClient, table: str, session_id: str) -> list[AttrMap]:
    return [
        item async for item in db.items(
            "query", TableName=table, KeyConditionExpression="#pk = :pk",
            ExpressionAttributeNames=_ATTRS,
            ExpressionAttributeValues={":pk": {"S": session_pk(session_id)}},
            ProjectionExpression=_PROJECTION, ConsistentRead=True,
        )
    ]


async def _add_partition(
    db: DynamoClient, table: str, plan: PurgePlan, session_id: str, require_user: str | None
) -> list[str]:
    """Add the session's items to ``plan`` (if it is the user's); return its branches."""
    keys: list[Key] = []
    refs: list[CacheRef] = []
    authors: Counter[str] = Counter()
    writers: set[str] = set()
    head = 0
    for item in await _partition(db, table, session_id):
        if "purged" in item:
            continue  # a tombstone of an earlier purge: content-free, it stays until it expires
        sk = item["sk"]["S"]
        keys.append((item["pk"]["S"], sk))
        user = item.get("user_id", {}).get("S", "")
        if sk.startswith(EVENT_PREFIX) and not is_part_sk(sk):
            authors[user] += 1
            writers.add(user)
            head = max(head, seq_of(sk))
            if item.get("type", {}).get("S") == "usage_recorded":
                plan.spenders.setdefault(session_id, set()).add(user)
        elif sk.startswith(CACHE_REF_PREFIX) and "ref_pk" in item:
            refs.append(CacheRef(item["ref_pk"]["S"], item["ref_sk"]["S"], session_id))
            writers.add(user)
    if require_user is not None and require_user not in writers:
        return []  # indexed under the user by a forged or stale record: not the user's
    if not keys:
        return []
    plan.sessions.append(session_id)
    plan.keys.extend(keys)
    plan.cache_refs.extend(refs)
    plan.authors[session_id] = authors
    plan.heads[session_id] = head
    return [branch_session_id(session_id, sk[len(REGISTRY_PREFIX):])
            for _, sk in keys if sk.startswith(REGISTRY_PREFIX)]


async def execute_purge(
    db: DynamoClient,
    table: str,
    plan: PurgePlan,
    *,
    on_batch: Callable[[int], None] | None = None,
    payloads: PayloadStore | None = None,
) -> int:
    """Erase every session of ``plan`` for good; return how many items were deleted.

    With ``payloads``, the sessions' objects in the payload bucket (large events and
    snapshots) are deleted first, so no copy of a purged payload stays in S3.

    ``plan.heads`` ends holding the last seq erased per session, which a writer racing
    the purge may have moved past the planned head (``convlog.purge_record`` signs it).

    Raises:
        StorageError: Items stayed unprocessed after ``MAX_BATCH_ATTEMPTS`` tries, or
            writers kept adding to a session for ``MAX_ROUNDS`` rounds.
    """
    if payloads is not None:
        for session_id in plan.sessions:
            await payloads.delete_session(session_id)
    deleted = 0
    todo = {s: _Pending() for s in plan.sessions}
    for key in plan.keys:
        todo[session_id_of(key[0])].keys.append(key)
    for ref in plan.cache_refs:
        todo[ref.session_id].refs.append(ref)
    for sid, pending in todo.items():
        pending.through = plan.heads.get(sid, 0)
    for _ in range(MAX_ROUNDS):
        plan.heads.update({sid: pending.through for sid, pending in todo.items()})
        if not todo:  # and what the usage totals say of them (the user's: all of it)
            await forget_usage(db, table, plan.spenders, user_id=plan.user_id)
            return deleted
        for pending in todo.values():
            for ref in pending.refs:
                deleted += await delete_owned_entry(db, table, ref)
        requests: list[AttrMap] = []
        now = time.time()
        for sid, pending in todo.items():
            requests += [{"PutRequest": {"Item": i}}
                         for i in purge_tombstones(sid, pending.through, now)]
            requests += [{"DeleteRequest": {"Key": {"pk": {"S": pk}, "sk": {"S": sk}}}}
                         for pk, sk in pending.keys if sk not in (META_SK, SNAPSHOT_SK)]
            deleted += len(pending.keys)
        for start in range(0, len(requests), BATCH_SIZE):
            batch = requests[start : start + BATCH_SIZE]
            await write_batch(db, table, batch)
            if on_batch:
                on_batch(len(batch))
        todo = await _leftovers(db, table, todo)
    raise StorageError(f"purge: writers kept adding to {sorted(todo)}; run the purge again")


@dataclass
class _Pending:
    keys: list[Key] = field(default_factory=list)
    refs: list[CacheRef] = field(default_factory=list)
    through: int = 0


async def _leftovers(
    db: DynamoClient, table: str, done: dict[str, _Pending]
) -> dict[str, _Pending]:
    """Read each purged partition again: what a racing writer or projector added."""
    left: dict[str, _Pending] = {}
    for sid, previous in done.items():
        again = PurgePlan()
        await _add_partition(db, table, again, sid, require_user=None)
        if again.keys:
            left[sid] = _Pending(again.keys, again.cache_refs,
                                 max(previous.through, again.heads.get(sid, 0)))
    return left


async def delete_owned_entry(db: DynamoClient, table: str, ref: CacheRef) -> int:
    """Delete a cache entry while it still names ``ref.session_id``; return 1 if deleted."""
    try:
        await db.call(
            "delete_item", TableName=table,
            Key={"pk": {"S": ref.pk}, "sk": {"S": ref.sk}},
            ConditionExpression="#s = :s",
            ExpressionAttributeNames={"#s": "session"},
            ExpressionAttributeValues={":s": {"S": ref.session_id}},
        )
    except ConditionFailedError:
        return 0  # gone, or replaced by another session's result: not ours to delete
    return 1


async def write_batch(db: DynamoClient, table: str, requests: list[AttrMap]) -> None:
    """One ``BatchWriteItem`` of up to 25 requests, retrying unprocessed ones with backoff."""
    for attempt in range(MAX_BATCH_ATTEMPTS):
        response = await db.call("batch_write_item", RequestItems={table: requests})
        requests = response.get("UnprocessedItems", {}).get(table, [])
        if not requests:
            return
        await asyncio.sleep(random.uniform(0, min(_BACKOFF_CAP, _BACKOFF_BASE * 2**attempt)))
    raise StorageError(
        f"purge: {len(requests)} writes still unprocessed after {MAX_BATCH_ATTEMPTS} "
        "attempts; run the purge again"
    )
