"""The benchmark's timed calls send exactly what bare calls send (issue 14).

Every request reaches moto through a counting proxy on 127.0.0.1 -- the watched client's
and the meter's shadow client's alike -- so a meter that slipped a request of its own
into a timed call (a shadow ``GetItem`` before a write, a projected read repeated without
its projection) shows up in the proxy's count, not only in the meter's.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks.meter import CapacityMeter
from benchmarks.scenarios import Figures, counted, timed
from benchmarks.workload import turn
from convlog.local import EmbeddedEndpoint
from eventstore import DynamoDBSession, create_table_if_not_exists
from tests.faults import FaultProxy, aio_client_for, boto3_client_for

REPS = 3


async def _bare(proxy: FaultProxy, call: Callable[[], Awaitable[Any]]) -> Counter[str]:
    proxy.clear()
    await call()
    return Counter(proxy.seen)


async def test_timed_calls_send_exactly_the_requests_of_bare_calls(
    endpoint: EmbeddedEndpoint,
) -> None:
    with FaultProxy(endpoint.url) as proxy:
        shadow = boto3_client_for(proxy.url)
        table = f"bench-meter-{uuid.uuid4().hex[:8]}"
        async with aio_client_for(proxy.url) as client:
            await create_table_if_not_exists(client, table)
            meter = CapacityMeter(client, shadow=shadow)
            session = DynamoDBSession("metered", client, table)
            await session.add_items(turn(0))  # the session knows its head from now on
            key = {"pk": {"S": "SESSION#metered"}, "sk": {"S": "EVENT#000000000001"}}
            peer_put = {"pk": {"S": "PEER#1"}, "sk": {"S": "DATA"}, "d": {"S": "x" * 3000}}
            await client.put_item(TableName=table, Item=peer_put)
            calls: dict[str, Callable[[], Awaitable[Any]]] = {
                "add_items": lambda: session.add_items(turn(1)),
                "get_items": session.get_items,
                "get_items(limit=20)": lambda: session.get_items(limit=20),
                # the peer's pattern: a projected GetItem, then a whole-item overwrite
                "projected get_item": lambda: client.get_item(
                    TableName=table, Key=key, ProjectionExpression="seq"),
                "overwrite put_item": lambda: client.put_item(TableName=table, Item=peer_put),
            }
            for name, call in calls.items():
                bare = await _bare(proxy, call)
                figures = Figures(0)
                proxy.clear()
                await timed(figures, meter, call, REPS, budget_seconds=60)
                assert figures.timed_calls == REPS, name
                assert Counter(proxy.seen) == Counter(
                    {op: n * REPS for op, n in bare.items()}), name
                assert figures.timed_requests == sum(bare.values()), name

                counted_figures = Figures(0)
                await counted(counted_figures, meter, call)
                assert counted_figures.requests == sum(bare.values()), name
                assert counted_figures.operations == dict(bare), name

            add = Figures(0)
            await counted(add, meter, lambda: session.add_items(turn(2)))
            assert (add.requests, add.wcu, add.rcu) == (1, 1.0, 0.0)
            overwrite = Figures(0)
            await counted(overwrite, meter,
                          lambda: client.put_item(TableName=table, Item=peer_put))
            assert overwrite.wcu == 3.0  # sized by the larger of old and new item
            projected = Figures(0)
            await counted(projected, meter, lambda: client.get_item(
                TableName=table, Key={"pk": peer_put["pk"], "sk": peer_put["sk"]},
                ProjectionExpression="pk"))
            assert projected.rcu == 0.5  # the whole item is billed, eventually consistent
