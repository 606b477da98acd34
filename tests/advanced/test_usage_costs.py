"""What usage and the queries cost: ``store_run_usage`` is one write when the session
object knows its head; the item-only queries read what ``get_items`` reads (the
snapshot and the newer events), not the branch's whole history."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from agents.usage import Usage

from benchmarks.meter import CapacityMeter
from convlog.local import EmbeddedEndpoint
from eventstore import DynamoDBSession
from tests.conftest import RequestCounter
from tests.integration.projection_support import make_pump


def result(requests: int = 1) -> Any:
    usage = Usage(requests=requests, input_tokens=10, output_tokens=2, total_tokens=12)
    return SimpleNamespace(context_wrapper=SimpleNamespace(usage=usage))


def turn(n: int) -> list[dict[str, Any]]:
    return [{"role": "user", "content": f"question {n}"},
            {"type": "function_call", "call_id": f"c{n}", "name": "lookup",
             "arguments": "{}"},
            {"type": "function_call_output", "call_id": f"c{n}", "output": "x" * 200},
            {"role": "assistant", "content": f"answer {n}"}]


@pytest.fixture
def meter(boto3_client: Any, endpoint: EmbeddedEndpoint) -> CapacityMeter:
    return CapacityMeter(boto3_client, shadow=endpoint.client("dynamodb"))


@pytest.mark.parametrize("turns", [3, 60])
async def test_store_run_usage_after_a_turn_is_one_write(
    boto3_client: Any, table: str, counter: RequestCounter, turns: int
) -> None:
    session = DynamoDBSession(f"usage-{turns}", boto3_client, table)
    for n in range(1, turns + 1):
        await session.add_items(turn(n))
        counter.reset()
        await session.store_run_usage(result(n))
        assert counter.counts == {"PutItem": 1}
    assert [u["requests"] for u in await session.get_turn_usage()] == list(range(1, turns + 1))
    # pops and a clear keep the object's turn count: still one write, the right turn
    await session.pop_item()
    await session.pop_item()
    await session.pop_item()
    await session.pop_item()  # the last user turn is gone
    counter.reset()
    await session.store_run_usage(result(99))
    assert counter.counts == {"PutItem": 1}
    assert (await session.get_turn_usage(turns - 1))["requests"] == 99
    await session.clear_session()
    counter.reset()
    await session.store_run_usage(result())  # no user turn: nothing written
    assert counter.total == 0


async def test_store_run_usage_from_a_stale_object_finds_the_current_turn(
    boto3_client: Any, table: str, counter: RequestCounter
) -> None:
    first = DynamoDBSession("stale", boto3_client, table)
    await first.add_items(turn(1))
    other = DynamoDBSession("stale", boto3_client, table)
    await other.add_items(turn(2))  # the first object does not know of this turn
    counter.reset()
    await first.store_run_usage(result(5))
    # the write at the old head fails, a newest-first read (one Query: snapshot, meta,
    # newest events) finds turn 2, one more write
    assert counter.counts == {"PutItem": 2, "Query": 1}
    assert (await first.get_turn_usage(2))["requests"] == 5
    assert await first.get_turn_usage(1) == {}
    counter.reset()
    fresh = DynamoDBSession("stale", boto3_client, table)
    await fresh.store_run_usage(result(6))  # knows nothing: one read, one write
    assert counter.counts == {"Query": 1, "PutItem": 1}  # the read: one request


async def test_item_queries_read_the_snapshot_like_get_items(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, meter: CapacityMeter
) -> None:
    writer = DynamoDBSession("q", boto3_client, table)
    for n in range(1, 41):
        await writer.add_items(turn(n))
    for _ in range(3):
        await writer.pop_item()
    make_pump(endpoint, table).drain()
    session = DynamoDBSession("q", boto3_client, table)
    with meter.measure(capacity=True) as items_cost:
        await session.get_items()
    with meter.measure(capacity=True) as tools_cost:
        tools = await session.get_tool_usage()
    with meter.measure(capacity=True) as by_turns_cost:
        by_turns = await session.get_conversation_by_turns()
    assert tools[-1] == ("lookup", 1, 39) and len(by_turns) == 40  # turn 40: popped to its question
    assert items_cost.requests == tools_cost.requests == by_turns_cost.requests == 1
    assert items_cost.round_trips == tools_cost.round_trips == by_turns_cost.round_trips == 1
    assert tools_cost.rcu == by_turns_cost.rcu == items_cost.rcu
    # the whole history (what these queries read before) costs more
    with meter.measure(capacity=True) as turns_cost:
        await session.get_conversation_turns()
    assert turns_cost.rcu > items_cost.rcu
