"""Throttling: botocore's retry mode retries it; when it gives up, a typed error, no write.

``tests.faults.FaultProxy`` answers chosen requests with DynamoDB's throttling errors (HTTP
400, as DynamoDB does) and counts every attempt it sees.
"""

from __future__ import annotations

import base64
import random
from typing import Any

import pytest
from faults import FaultProxy, aio_client_for, boto3_client_for

from eventstore import DynamoDBSession
from eventstore.errors import ThrottledError
from eventstore.log import EventLog

PTEE = "ProvisionedThroughputExceededException"


async def history(client: Any, table: str, session_id: str) -> list[Any]:
    return [e async for e in EventLog(client, table).iter_events(session_id)]


@pytest.mark.parametrize(
    ("code", "retries", "throttled", "attempts"),
    [
        pytest.param(PTEE, {"mode": "legacy", "max_attempts": 4}, 3, 4, id="legacy-ptee"),
        pytest.param("ThrottlingException", {"mode": "legacy", "max_attempts": 4}, 2, 3,
                     id="legacy-throttling"),
        pytest.param("ThrottlingException", {"mode": "standard", "max_attempts": 1}, 1, 2,
                     id="standard-throttling"),
    ],
)
async def test_throttled_append_is_retried_by_botocore(
    proxy: FaultProxy, table: str, code: str, retries: dict[str, Any], throttled: int,
    attempts: int,
) -> None:
    client = boto3_client_for(proxy.url, retries=retries)
    session = DynamoDBSession("throttled", client, table)
    await session.add_items([{"role": "user", "content": "one"}])
    proxy.clear()
    rule = proxy.error("PutItem", code, times=throttled)
    await session.add_items([{"role": "user", "content": "two"}])
    assert rule.fired == throttled
    assert proxy.seen["PutItem"] == attempts
    assert [e.event.seq for e in await history(client, table, "throttled")] == [1, 2]
    assert await session.get_items() == [{"role": "user", "content": "one"},
                                         {"role": "user", "content": "two"}]


async def test_throttled_read_is_retried_by_aiobotocore(proxy: FaultProxy, table: str) -> None:
    async with aio_client_for(proxy.url, retries={"mode": "legacy", "max_attempts": 4}) as c:
        session = DynamoDBSession("throttled-aio", c, table)
        await session.add_items([{"role": "user", "content": "one"}])
        proxy.clear()
        proxy.error("Query", PTEE, times=2)
        assert await session.get_items() == [{"role": "user", "content": "one"}]
        assert proxy.seen["Query"] == 3  # one query, throttled twice, answered the third time
        proxy.error("PutItem", "ThrottlingException", times=1)
        assert await session.pop_item() == {"role": "user", "content": "one"}
        assert proxy.seen["PutItem"] == 2


@pytest.mark.parametrize("op", ["PutItem", "Query"])
async def test_exhausted_retries_raise_throttled_error_and_log_is_unchanged(
    proxy: FaultProxy, table: str, op: str
) -> None:
    client = boto3_client_for(proxy.url, retries={"mode": "legacy", "max_attempts": 2})
    session = DynamoDBSession("exhausted", client, table)
    await session.add_items([{"role": "user", "content": "kept"}])
    before = await history(client, table, "exhausted")
    proxy.clear()
    proxy.error(op, PTEE, times=100)
    with pytest.raises(ThrottledError, match=PTEE) as caught:
        if op == "PutItem":
            await session.add_items([{"role": "user", "content": "never stored"}])
        else:
            await session.pop_item()
    assert caught.value.code == PTEE
    # the first attempt and botocore's two retries (a read is one query)
    assert proxy.seen[op] == 3
    proxy.clear()
    assert await history(client, table, "exhausted") == before
    assert await session.get_items() == [{"role": "user", "content": "kept"}]


async def test_exhausted_retries_on_an_event_in_parts(proxy: FaultProxy, table: str) -> None:
    async with aio_client_for(proxy.url, retries={"mode": "legacy", "max_attempts": 1}) as c:
        session = DynamoDBSession("exhausted-tx", c, table)
        await session.add_items([{"role": "user", "content": "kept"}])
        proxy.error("PutItem", "ThrottlingException", times=100)
        big = {"role": "user", "content":
           base64.b64encode(random.Random(5).randbytes(450_000)).decode()}
        with pytest.raises(ThrottledError):
            await session.add_items([big])
        assert proxy.seen["PutItem"] == 3  # the first part, then its one retry
        assert proxy.seen["TransactWriteItems"] == 0  # parts, then the commit (issue 13)
        proxy.clear()
        assert [e.event.seq for e in await history(c, table, "exhausted-tx")] == [1]
        await session.add_items([big])
        assert await session.get_items() == [{"role": "user", "content": "kept"}, big]
