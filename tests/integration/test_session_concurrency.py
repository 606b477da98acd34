"""Concurrent writers and poppers on one session, and lost responses (DESIGN rules 1, 2, 5).

Everything runs against moto's server over HTTP with real boto3 and aiobotocore clients;
the lost responses are injected by ``tests.faults.FaultProxy``.
"""

from __future__ import annotations

import asyncio
import base64
import random
from collections import Counter
from typing import Any

import pytest
from faults import FaultProxy, aio_client_for, boto3_client_for

from eventstore import DynamoDBSession
from eventstore.errors import AmbiguousResultError
from eventstore.events import GENESIS_HASH, chain_hash
from eventstore.log import EventLog
from eventstore.records import StoredEvent

WRITERS = 16
PER_WRITER = 50
POPPERS = 10


async def verified_chain(client: Any, table: str, session_id: str) -> list[StoredEvent]:
    """Every stored event, after checking seqs 1..n without gaps and the hash chain."""
    events = [e async for e in EventLog(client, table).iter_events(session_id)]
    assert [e.event.seq for e in events] == list(range(1, len(events) + 1))
    prev = GENESIS_HASH
    for stored in events:
        assert stored.prev_hash == prev, f"broken link at seq {stored.event.seq}"
        assert chain_hash(prev, stored.event) == stored.hash, f"bad hash at {stored.event.seq}"
        prev = stored.hash
    assert len({e.event.token for e in events}) == len(events)
    return events


async def test_sixteen_writers_fifty_items_each(
    endpoint: Any, aio_client: Any, table: str
) -> None:
    shared_boto3 = boto3_client_for(endpoint.url, max_pool_connections=WRITERS)

    async def writer(number: int) -> None:
        client = shared_boto3 if number % 2 else aio_client
        session = DynamoDBSession("busy", client, table, user_id=f"writer-{number}")
        for i in range(PER_WRITER):
            await session.add_items([{"role": "user", "content": f"w{number}-{i}"}])

    await asyncio.gather(*(writer(n) for n in range(WRITERS)))

    items = await DynamoDBSession("busy", shared_boto3, table).get_items()
    contents = [item["content"] for item in items]
    assert len(contents) == WRITERS * PER_WRITER
    assert Counter(contents) == Counter(
        f"w{n}-{i}" for n in range(WRITERS) for i in range(PER_WRITER)
    )
    for n in range(WRITERS):  # each writer's items keep its own order
        mine = [c for c in contents if c.startswith(f"w{n}-")]
        assert mine == [f"w{n}-{i}" for i in range(PER_WRITER)]

    events = await verified_chain(shared_boto3, table, "busy")
    assert len(events) == WRITERS * PER_WRITER
    assert {e.event.type for e in events} == {"items_added"}
    assert Counter(e.event.user_id for e in events) == Counter(
        {f"writer-{n}": PER_WRITER for n in range(WRITERS)}
    )


async def test_ten_poppers_return_every_item_once(
    boto3_client: Any, aio_client: Any, table: str
) -> None:
    items = [{"role": "user", "content": f"item-{i}"} for i in range(100)]
    loader = DynamoDBSession("pops", boto3_client, table)
    for start in range(0, 100, 25):
        await loader.add_items(items[start : start + 25])

    async def popper(number: int) -> tuple[list[Any], list[Any]]:
        client = boto3_client if number % 2 else aio_client
        session = DynamoDBSession("pops", client, table)
        got: list[Any] = []
        while (item := await session.pop_item()) is not None:
            got.append(item)
        after = [await session.pop_item() for _ in range(2)]
        return got, after

    results = await asyncio.gather(*(popper(n) for n in range(POPPERS)))
    popped = [item["content"] for got, _ in results for item in got]
    assert sorted(popped) == sorted(item["content"] for item in items)
    assert len(popped) == len(set(popped)) == 100
    for got, after in results:  # each worker sees the items newest first
        order = [int(item["content"].split("-")[1]) for item in got]
        assert order == sorted(order, reverse=True)
        assert after == [None, None]
    assert await loader.get_items() == []

    events = await verified_chain(boto3_client, table, "pops")
    assert assert_pops_removed_the_newest_item(events) == []
    popped_events = [e.event for e in events if e.event.type == "item_popped"]
    assert len(popped_events) == 100
    assert sorted(e.item["content"] for e in popped_events) == sorted(popped)


def assert_pops_removed_the_newest_item(events: list[StoredEvent]) -> list[Any]:
    """Replay oldest-first: every ``item_popped`` must record the then-newest live item."""
    live: list[Any] = []
    for stored in events:
        event = stored.event
        if event.type == "items_added":
            live.extend(event.items)
        elif event.type == "item_popped":
            assert live, f"seq {event.seq} popped from an empty session"
            assert event.item == live.pop(), f"seq {event.seq} popped the wrong item"
        else:
            live.clear()
    return live


async def test_mixed_writers_poppers_and_readers(
    boto3_client: Any, aio_client: Any, table: str
) -> None:
    """Objects that remember state (after reads and writes) race with each other."""
    async def worker(number: int) -> list[Any]:
        rng = random.Random(number)
        session = DynamoDBSession("mixed", aio_client if number % 2 else boto3_client, table)
        popped: list[Any] = []
        for step in range(20):
            roll = rng.random()
            if roll < 0.45:
                await session.add_items(
                    [{"role": "user", "content": f"{number}-{step}-{k}"}
                     for k in range(rng.randint(1, 3))])
            elif roll < 0.85:
                item = await session.pop_item()
                if item is not None:
                    popped.append(item)
            else:
                await session.get_items()
        return popped

    results = await asyncio.gather(*(worker(n) for n in range(8)))
    events = await verified_chain(boto3_client, table, "mixed")
    live = assert_pops_removed_the_newest_item(events)
    assert await DynamoDBSession("mixed", boto3_client, table).get_items() == live
    recorded = sorted(e.event.item["content"] for e in events if e.event.type == "item_popped")
    returned = sorted(item["content"] for popped in results for item in popped)
    assert returned == recorded
    assert len(set(returned)) == len(returned)


def stored_contents(events: list[StoredEvent]) -> list[str]:
    return [i["content"] for e in events if e.event.type == "items_added" for i in e.event.items]


@pytest.mark.parametrize(
    "retries",
    [
        pytest.param({"mode": "standard", "max_attempts": 0}, id="no-botocore-retry"),
        pytest.param({"mode": "legacy", "max_attempts": 3}, id="botocore-legacy-retry"),
        pytest.param({"mode": "standard", "max_attempts": 2}, id="botocore-standard-retry"),
    ],
)
async def test_lost_put_response_is_not_duplicated_boto3(
    proxy: FaultProxy, table: str, retries: dict[str, Any]
) -> None:
    client = boto3_client_for(proxy.url, retries=retries)
    session = DynamoDBSession("lost", client, table)
    await session.add_items([{"role": "user", "content": "before"}])
    proxy.clear()
    rule = proxy.drop_response("PutItem")
    await session.add_items([{"role": "user", "content": "landed once"}])
    assert rule.fired == 1
    # the lost attempt plus one retry (by botocore or by the log) that finds its own event
    assert proxy.seen["PutItem"] == 2
    events = await verified_chain(client, table, "lost")
    assert stored_contents(events) == ["before", "landed once"]
    await session.add_items([{"role": "user", "content": "after"}])
    assert [i["content"] for i in await session.get_items()] == [
        "before", "landed once", "after",
    ]


async def test_lost_put_response_is_not_duplicated_aiobotocore(
    proxy: FaultProxy, table: str
) -> None:
    async with aio_client_for(proxy.url, retries={"mode": "standard", "max_attempts": 0}) as c:
        session = DynamoDBSession("lost-aio", c, table)
        await session.add_items([{"role": "user", "content": "before"}])
        proxy.drop_response("PutItem")
        await session.add_items([{"role": "user", "content": "landed once"}])
        proxy.drop_response("PutItem")
        assert await session.pop_item() == {"role": "user", "content": "landed once"}
        assert await session.pop_item() == {"role": "user", "content": "before"}
        assert await session.pop_item() is None
        events = await verified_chain(c, table, "lost-aio")
    assert [e.event.type for e in events] == [
        "items_added", "items_added", "item_popped", "item_popped",
    ]


async def test_lost_response_of_an_event_in_parts_is_not_duplicated(
    proxy: FaultProxy, table: str
) -> None:
    client = boto3_client_for(proxy.url, retries={"mode": "standard", "max_attempts": 0})
    session = DynamoDBSession("lost-big", client, table)
    big = {"role": "user", "content":
           base64.b64encode(random.Random(5).randbytes(450_000)).decode()}
    await session.add_items([{"role": "user", "content": "small"}])
    proxy.drop_response("PutItem", times=2)  # the first part's response, lost twice
    await session.add_items([big])
    assert proxy.seen["PutItem"] == 1 + 4 and proxy.seen["TransactWriteItems"] == 0
    events = await verified_chain(client, table, "lost-big")
    assert len(events) == 2
    assert await session.get_items() == [{"role": "user", "content": "small"}, big]


async def test_response_lost_every_time_raises_typed_error_and_stores_once(
    proxy: FaultProxy, table: str
) -> None:
    client = boto3_client_for(proxy.url, retries={"mode": "standard", "max_attempts": 0})
    session = DynamoDBSession("always-lost", client, table)
    await session.add_items([{"role": "user", "content": "first"}])
    proxy.drop_response("PutItem", times=100)
    with pytest.raises(AmbiguousResultError, match="response was lost"):
        await session.add_items([{"role": "user", "content": "maybe"}])
    proxy.clear()
    events = await verified_chain(client, table, "always-lost")
    assert stored_contents(events) == ["first", "maybe"]
