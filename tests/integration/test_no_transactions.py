"""No transactions (issue 13): parts first, then the one conditional put that commits.

Against moto over HTTP: the session and the projector never send TransactWriteItems;
parts of a commit that lost are never read as part of the log. The projector's tool-cache
entries are staged, checked and committed (``eventstore.cache_commit``): an invalidation
or a purge that lands between staging and commit still wins.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from conftest import RequestCounter
from projection_support import make_pump, view_items
from test_session_size_ttl import noise, scan_session

from convlog.audit import verify_session
from convlog.purge import execute_purge, plan_purge
from eventstore import DynamoDBSession, ToolCache
from eventstore.capacity import put_write_units
from eventstore.client import wrap_client
from eventstore.events import GENESIS_HASH, ItemsAdded, chain_hash
from eventstore.keys import is_part_sk
from eventstore.log import EventLog
from eventstore.records import encode_event
from stream_handlers.projector import build_handler


async def test_session_and_projector_send_no_transaction(
    endpoint: Any, boto3_client: Any, table: str, counter: Any
) -> None:
    big = {"role": "tool", "content": noise(1_000_000, seed=31)}
    session = DynamoDBSession("no-tx", boto3_client, table)
    await session.add_items([{"role": "user", "content": "hi"}])
    await session.add_items([big])  # a 1 MB item: parts
    await session.add_items([{"role": "assistant", "content": "done"}])
    assert await session.pop_item() == {"role": "assistant", "content": "done"}
    projector_client = endpoint.client("dynamodb")
    projector = RequestCounter(projector_client)
    make_pump(endpoint, table, build_handler(projector_client, table)).drain()
    assert counter.counts["TransactWriteItems"] == 0
    assert projector.counts["TransactWriteItems"] == 0 and projector.counts["PutItem"] >= 3
    rows = scan_session(boto3_client, table, "no-tx")
    snapshot_parts = [r for r in rows if r["sk"]["S"].startswith("SNAPSHOT#")]
    assert snapshot_parts, "the snapshot is larger than an item: it has parts"
    counter.reset()
    fresh = DynamoDBSession("no-tx", boto3_client, table)
    assert await fresh.get_items() == [{"role": "user", "content": "hi"}, big]
    assert counter.counts == {"Query": 1}  # snapshot (chunks, parts, head), meta, events
    assert (await verify_session(EventLog(boto3_client, table), "no-tx")).ok


def _orphan_parts(session_id: str, seq: int, prev_hash: str) -> list[dict[str, Any]]:
    """The parts of an event whose commit was lost (its head never written)."""
    event = ItemsAdded(session_id=session_id, seq=seq, ts="2026-01-01T00:00:00.000Z",
                       token="lost", items=[{"c": noise(900_000, seed=seq)}])
    items = encode_event(event, prev_hash, chain_hash(prev_hash, event), ttl=None)
    assert len(items) >= 2
    return items[1:]


async def test_parts_of_a_lost_commit_are_never_read(boto3_client: Any, table: str) -> None:
    session = DynamoDBSession("orphans", boto3_client, table)
    await session.add_items([{"role": "user", "content": "first"}])
    head = await EventLog(boto3_client, table).read_head("orphans")
    for seq in (2, 3):  # lost commits at the next seq and beyond it
        for part in _orphan_parts("orphans", seq, GENESIS_HASH):
            boto3_client.put_item(TableName=table, Item=part)
    assert await EventLog(boto3_client, table).read_head("orphans") == head
    big = {"role": "tool", "content": noise(800_000, seed=32)}
    writer = DynamoDBSession("orphans", boto3_client, table)
    await writer.add_items([big])  # commits seq 2 beside the orphan parts
    reader = DynamoDBSession("orphans", boto3_client, table)
    assert await reader.get_items() == [{"role": "user", "content": "first"}, big]
    assert await reader.get_items(limit=1) == [big]
    report = await verify_session(EventLog(boto3_client, table), "orphans")
    assert report.ok and report.last_seq == 2
    await writer.add_items([{"role": "user", "content": "third"}])
    assert (await EventLog(boto3_client, table).read_head("orphans")).seq == 3


async def test_the_loser_of_a_race_deletes_its_parts(boto3_client: Any, table: str) -> None:
    first = {"role": "user", "content": "start"}
    a = DynamoDBSession("race-parts", boto3_client, table)
    b = DynamoDBSession("race-parts", boto3_client, table)
    await a.add_items([first])
    assert await b.get_items() == [first]  # b now believes the head is seq 1
    x = {"role": "tool", "content": noise(900_000, seed=33)}
    y = {"role": "tool", "content": noise(900_000, seed=34)}
    await a.add_items([x])  # seq 2
    await b.add_items([y])  # loses seq 2, deletes its parts there, commits seq 3
    rows = scan_session(boto3_client, table, "race-parts")
    heads = {r["sk"]["S"]: r for r in rows if not is_part_sk(r["sk"]["S"])}
    for row in rows:
        if is_part_sk(row["sk"]["S"]):
            owner = heads[row["sk"]["S"][:18]]
            assert row["sk"]["S"].startswith(owner["sk"]["S"] + "#"
                                             + owner["payload_sha256"]["S"][:16])
    assert await DynamoDBSession("race-parts", boto3_client, table).get_items() == [first, x, y]


# --- the projector's tool-cache entries (issue 11 with 13): stage, check, commit ---------


def _tool_pairs(n: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for i in range(n):
        items += [{"type": "function_call", "name": "lookup", "call_id": f"c{i}", "id": f"c{i}",
                   "arguments": f'{{"q": {i}}}'},
                  {"type": "function_call_output", "call_id": f"c{i}", "output": f"row {i}"}]
    return items


def _on_check(client: Any, action: Any) -> None:
    """Run ``action`` (in its own thread) just before the projector's second BatchGetItem.

    The first one reads the session's views; the second is the check of the staged
    tool-cache entries, so ``action`` lands between their staging and their commit.
    """
    seen = {"n": 0}

    def hook(**_: Any) -> None:
        seen["n"] += 1
        if seen["n"] == 2:
            worker = threading.Thread(target=lambda: asyncio.run(action()))
            worker.start()
            worker.join()

    client.meta.events.register("before-send.dynamodb.BatchGetItem", hook)


async def test_projected_cache_entries_send_no_transaction(
    endpoint: Any, boto3_client: Any, table: str
) -> None:
    await DynamoDBSession("acme/tools", boto3_client, table, user_id="acme/ann").add_items(
        _tool_pairs(3))
    projector_client = endpoint.client("dynamodb")
    projector = RequestCounter(projector_client)
    make_pump(endpoint, table, build_handler(projector_client, table)).drain()
    # views: one BatchGetItem, snapshot and meta one PutItem each; entries: 3 owner
    # records (PutItem) and 3 staging UpdateItems sent together, one BatchGetItem (the
    # tool's mark and the session's meta), 3 committing UpdateItems
    assert dict(projector.counts) == {"BatchGetItem": 2, "PutItem": 2 + 3, "UpdateItem": 6}
    cache = ToolCache(boto3_client, table, scope="acme")
    for i in range(3):
        hit = await cache.get("lookup", {"q": i})
        assert hit is not None and hit.output == f"row {i}"
        assert (hit.session_id, hit.user_id) == ("acme/tools", "acme/ann")
    entries = [i for i in view_items(boto3_client, table) if i["pk"]["S"] == "TOOL#acme/lookup"]
    records = [i for i in scan_session(boto3_client, table, "acme/tools")
               if i["sk"]["S"].startswith("CACHE#")]
    assert len(entries) == len(records) == 3
    assert not any("pending" in e for e in entries)
    # every write touches one item of at most 1 KB: 1 WCU each, 3 per entry (staging,
    # commit, owner record) where one transaction of 4 items cost 2 WCU per item: 8
    units = [put_write_units(e) for e in entries] + [put_write_units(r) for r in records]
    assert units == [1] * 6
    assert 2 * sum(units[:3]) + sum(units[3:]) == 3 * 3 < 8 * 3


async def test_an_invalidation_between_staging_and_commit_wins(
    endpoint: Any, boto3_client: Any, table: str
) -> None:
    await DynamoDBSession("inv-race", boto3_client, table).add_items(_tool_pairs(2))
    time.sleep(1.1)  # the stream's clock has a resolution of one second
    other = ToolCache(endpoint.client("dynamodb"), table)
    projector_client = endpoint.client("dynamodb")
    _on_check(projector_client, lambda: other.invalidate("lookup"))
    make_pump(endpoint, table, build_handler(projector_client, table)).drain()
    cache = ToolCache(boto3_client, table)
    assert await cache.get("lookup", {"q": 0}) is None
    assert await cache.get("lookup", {"q": 1}) is None
    left = [i for i in view_items(boto3_client, table) if i["pk"]["S"] == "TOOL#lookup"]
    assert [i["sk"]["S"] for i in left] == ["INVALIDATED"]  # no entry, staged or not
    make_pump(endpoint, table).drain()  # the whole stream again
    assert await cache.get("lookup", {"q": 0}) is None


async def test_a_purge_between_staging_and_commit_wins(
    endpoint: Any, boto3_client: Any, table: str
) -> None:
    await DynamoDBSession("purge-race", boto3_client, table, user_id="pia").add_items(
        _tool_pairs(2))
    purger = wrap_client(endpoint.client("dynamodb"))

    async def purge() -> None:
        plan = await plan_purge(purger, table, session_id="purge-race")
        await execute_purge(purger, table, plan)

    projector_client = endpoint.client("dynamodb")
    _on_check(projector_client, purge)
    make_pump(endpoint, table, build_handler(projector_client, table)).drain()
    assert await ToolCache(boto3_client, table).get("lookup", {"q": 0}) is None
    rows = scan_session(boto3_client, table, "purge-race")
    assert sorted(r["sk"]["S"] for r in rows) == ["META", "SNAPSHOT"]
    assert all("purged" in r and "user_id" not in r for r in rows)
    assert not [i for i in view_items(boto3_client, table) if i["pk"]["S"].startswith("TOOL#")]
