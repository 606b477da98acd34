"""No transactions (issue 13): parts first, then the one conditional put that commits.

Against moto over HTTP: the session and the projector never send TransactWriteItems;
parts of a commit that lost are never read as part of the log.
"""

from __future__ import annotations

from typing import Any

from conftest import RequestCounter
from projection_support import make_pump
from test_session_size_ttl import noise, scan_session

from convlog.audit import verify_session
from eventstore import DynamoDBSession
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
    assert counter.counts == {"Query": 1}
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
