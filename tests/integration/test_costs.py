"""What convlog's operations cost, in requests and capacity units (issue 6).

These figures are deterministic -- they follow from the storage layout and DynamoDB's
rounding rules -- so they are asserted exactly: a change that makes ``add_items`` read
before it writes, or ``get_items`` page through events behind a fresh snapshot, turns
CI red. Requests are counted at botocore's ``before-send``; capacity units are computed
by ``benchmarks.meter.CapacityMeter`` from the sizes of the items each request wrote
or read. The side-by-side comparison with the single-item ``DynamoDBSession`` and with
``SQLiteSession`` (and every latency) lives in ``python -m benchmarks``.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from typing import Any

import pytest

from benchmarks.meter import CapacityMeter
from convlog.local import EmbeddedEndpoint
from convlog.pump import StreamPump
from eventstore import DynamoDBSession
from eventstore.capacity import (
    item_size,
    number_size,
    put_write_units,
    query_read_units,
    read_units,
    value_size,
    write_units,
)
from eventstore.events import GENESIS_HASH, ItemsAdded, chain_hash, now_iso
from eventstore.records import encode_event
from stream_handlers.projector import build_handler

LENGTHS = (10, 100, 1_000)
MESSAGE_BYTES = 300


def message(role: str, index: int) -> dict[str, Any]:
    """A chat message whose compact JSON is exactly 300 bytes."""
    shell = len(json.dumps({"role": role, "content": ""}, separators=(",", ":")))
    text = f"{role} {index}: " + "the order shipped today and arrives tomorrow morning " * 8
    return {"role": role, "content": text[: MESSAGE_BYTES - shell]}


def turn(index: int) -> list[dict[str, Any]]:
    return [message("user", index), message("assistant", index)]


def seed(client: Any, table: str, session_id: str, items: int) -> list[dict[str, Any]]:
    """Write ``items // 2`` one-turn events, exactly as ``add_items`` stores them."""
    history: list[dict[str, Any]] = []
    prev, puts = GENESIS_HASH, []
    for seq in range(1, items // 2 + 1):
        event = ItemsAdded(session_id=session_id, seq=seq, ts=now_iso(),
                           token=uuid.uuid4().hex, items=turn(seq))
        digest = chain_hash(prev, event)
        puts.extend(encode_event(event, prev, digest, ttl=None))
        prev = digest
        history.extend(turn(seq))
    for start in range(0, len(puts), 25):
        batch = [{"PutRequest": {"Item": i}} for i in puts[start : start + 25]]
        assert not client.batch_write_item(RequestItems={table: batch}).get("UnprocessedItems")
    return history


@pytest.fixture
def meter(boto3_client: Any, endpoint: EmbeddedEndpoint) -> CapacityMeter:
    return CapacityMeter(boto3_client, shadow=endpoint.client("dynamodb"))


def project(endpoint: EmbeddedEndpoint, table: str) -> int:
    handler = build_handler(endpoint.client("dynamodb"), table)
    return StreamPump(handler, table, client_kwargs=endpoint.client_kwargs()).drain()


def single_item_wcu(session_id: str, items: list[dict[str, Any]]) -> int:
    """WCU of one write of the single-item design: the whole history in one item."""
    item = {
        "session_id": {"S": session_id},
        "conversation_data": {"S": json.dumps(items)},
        "updated_at": {"N": str(int(time.time()))},
    }
    return put_write_units(item)


# --- the rules themselves -------------------------------------------------------------


def test_item_sizes_follow_dynamodbs_documented_rules() -> None:
    assert value_size({"S": "héllo"}) == 6  # UTF-8 bytes
    assert value_size({"B": b"\x00\x01\x02"}) == 3  # raw bytes, not base64
    assert value_size({"B": "AAEC"}) == 3  # base64 text as on the wire
    assert number_size("7") == 2 and number_size("12345") == 4
    assert number_size("1000") == number_size("1") == 2  # trailing zeroes trimmed
    assert number_size("0.0012") == 2  # leading zeroes trimmed
    assert value_size({"BOOL": True}) == value_size({"NULL": True}) == 1
    assert value_size({"L": []}) == value_size({"M": {}}) == 3
    assert value_size({"L": [{"S": "ab"}, {"N": "1"}]}) == 3 + (1 + 2) + (1 + 2)
    assert value_size({"M": {"k": {"S": "v"}}}) == 3 + 1 + 1 + 1
    assert value_size({"SS": ["a", "bc"]}) == 3
    assert item_size({"pk": {"S": "p"}, "n": {"N": "42"}}) == (2 + 1) + (1 + 2)
    with pytest.raises(ValueError):
        value_size({"X": 1})


def test_capacity_units_round_up_per_started_unit() -> None:
    assert write_units(0) == 1 and write_units(1024) == 1 and write_units(1025) == 2
    assert write_units(1025, transactional=True) == 4
    assert read_units(0) == 1.0 and read_units(4096) == 1.0 and read_units(4097) == 2.0
    assert read_units(4097, consistent=False) == 1.0
    assert read_units(4097, transactional=True) == 4.0
    small = {"pk": {"S": "x" * 1000}}
    assert query_read_units([small] * 4, consistent=True) == 1.0  # summed, then rounded
    assert query_read_units([small] * 5, consistent=True) == 2.0
    big = {"pk": {"S": "x" * 3000}}
    assert put_write_units(small, old=big) == 3  # the larger of old and new


# --- add_items ------------------------------------------------------------------------


async def test_add_items_is_one_request_and_one_wcu_at_every_history_length(
    boto3_client: Any, table: str, meter: CapacityMeter
) -> None:
    warm: dict[int, Any] = {}
    cold: dict[int, Any] = {}
    histories: dict[int, list[dict[str, Any]]] = {}
    for length in LENGTHS:
        session_id = f"add-{length}"
        histories[length] = seed(boto3_client, table, session_id, length)
        session = DynamoDBSession(session_id, boto3_client, table)
        with meter.measure() as cold[length]:
            await session.add_items(turn(10_000))  # a new object learns the head first
        with meter.measure() as warm[length]:
            await session.add_items(turn(10_001))
        histories[length] += turn(10_000) + turn(10_001)

    for length in LENGTHS:
        assert dict(warm[length].operations) == {"PutItem": 1}, length
        assert warm[length].requests == 1
        assert warm[length].wcu == 1.0
        assert warm[length].rcu == 0.0
        assert dict(cold[length].operations) == {"Query": 1, "PutItem": 1}
        assert (cold[length].wcu, cold[length].rcu) == (1.0, 1.0)  # Limit=1 head read
    sent = [warm[length].bytes_sent for length in LENGTHS]
    assert max(sent) - min(sent) <= 4  # only the seq's digits differ
    assert max(sent) < 1_400

    # The single-item design rewrites the whole history on every add.
    peer_wcu = single_item_wcu("add-1000", histories[1_000])
    assert peer_wcu >= 50 * warm[1_000].wcu
    assert peer_wcu == math.ceil(peer_wcu)  # sanity: an integer number of units


# --- get_items ------------------------------------------------------------------------


async def test_get_items_with_a_fresh_snapshot_is_one_round_trip_at_every_length(
    boto3_client: Any, table: str, meter: CapacityMeter, endpoint: EmbeddedEndpoint
) -> None:
    histories = {n: seed(boto3_client, table, f"read-{n}", n) for n in LENGTHS}
    assert project(endpoint, table) == sum(n // 2 for n in LENGTHS)

    rcu: dict[int, float] = {}
    for length, history in histories.items():
        session = DynamoDBSession(f"read-{length}", boto3_client, table)
        with meter.measure() as everything:
            assert await session.get_items() == history
        with meter.measure() as again:
            await session.get_items()
        with meter.measure() as newest:
            assert await session.get_items(limit=20) == history[-20:]
        # one newest-first Query: the snapshot (chunks, head), the meta item, the newest
        # events (a whole read at 1,000 items: 14 chunks and the event that proves them)
        assert dict(everything.operations) == {"Query": 1}, length
        assert dict(newest.operations) == {"Query": 1}, length
        assert everything.round_trips == newest.round_trips == 1, length
        assert everything.wcu == newest.wcu == 0.0
        assert again.rcu == everything.rcu  # deterministic
        assert newest.rcu <= everything.rcu
        rcu[length] = everything.rcu

    # Behind a fresh snapshot the read does not grow with the events written.
    replay = await _replay_rcu(boto3_client, table, "read-1000")
    assert rcu[1_000] < replay


async def _replay_rcu(client: Any, table: str, session_id: str) -> float:
    """RCU of reading every event of a session (what a read without snapshot pays)."""
    response = client.query(
        TableName=table, KeyConditionExpression="pk = :pk AND begins_with(sk, :ev)",
        ExpressionAttributeValues={":pk": {"S": f"SESSION#{session_id}"}, ":ev": {"S": "EVENT#"}},
        ConsistentRead=True,
    )
    return query_read_units(response["Items"], consistent=True)


async def test_get_items_with_the_projector_stopped_pages_through_the_events(
    boto3_client: Any, table: str, meter: CapacityMeter
) -> None:
    history = seed(boto3_client, table, "no-snapshot", 1_000)
    session = DynamoDBSession("no-snapshot", boto3_client, table)
    with meter.measure() as everything:
        assert await session.get_items() == history
    with meter.measure() as newest:
        assert await session.get_items(limit=20) == history[-20:]
    # No snapshot: pages of 18 (16 events beside the head and meta rows it would have
    # held), 128 and 1,024 rows cover 500 events; the newest 20 items fit in one.
    assert dict(everything.operations) == {"Query": 3}
    assert dict(newest.operations) == {"Query": 1}
    replay = await _replay_rcu(boto3_client, table, "no-snapshot")
    assert replay <= everything.rcu <= replay + everything.requests  # each page rounds up
    assert newest.rcu < everything.rcu
