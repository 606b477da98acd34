"""Exactly-once retries: an idempotency key makes a retried write land at most once.

Every response of the first attempt is lost (``tests.faults.FaultProxy`` forwards the
request, so the write lands, then drops the answer), the session raises
``AmbiguousResultError``, and the caller retries with the same key.
"""

from __future__ import annotations

from typing import Any

import pytest
from agents.run_context import RunContextWrapper
from faults import FaultProxy, boto3_client_for

from eventstore import DynamoDBSession
from eventstore.errors import AmbiguousResultError, InvalidInputError
from eventstore.log import EventLog

NO_RETRY = {"mode": "standard", "max_attempts": 0}


async def types(client: Any, table: str, session_id: str) -> list[str]:
    return [s.event.type async for s in EventLog(client, table).iter_events(session_id)]


async def test_retried_add_with_key_lands_once(proxy: FaultProxy, table: str) -> None:
    client = boto3_client_for(proxy.url, retries=NO_RETRY)
    session = DynamoDBSession("add-once", client, table)
    await session.add_items([{"role": "user", "content": "first"}])
    proxy.drop_response("PutItem", times=100)
    item = [{"role": "user", "content": "maybe"}]
    with pytest.raises(AmbiguousResultError):
        await session.add_items(item, idempotency_key="req-1")
    proxy.clear()
    await session.add_items(item, idempotency_key="req-1")  # recognised, not re-written
    assert await types(client, table, "add-once") == ["items_added", "items_added"]
    # a new process retrying with the same key recognises it too
    await DynamoDBSession("add-once", client, table).add_items(item, idempotency_key="req-1")
    assert [i["content"] for i in await session.get_items()] == ["first", "maybe"]


async def test_retry_without_key_writes_twice(proxy: FaultProxy, table: str) -> None:
    """What the key prevents: the same retry without it stores the items twice."""
    client = boto3_client_for(proxy.url, retries=NO_RETRY)
    session = DynamoDBSession("add-twice", client, table)
    proxy.drop_response("PutItem", times=100)
    with pytest.raises(AmbiguousResultError):
        await session.add_items([{"role": "user", "content": "maybe"}])
    proxy.clear()
    await session.add_items([{"role": "user", "content": "maybe"}])
    assert len(await session.get_items()) == 2


async def test_retried_pop_with_key_returns_the_same_item_once(
    proxy: FaultProxy, table: str
) -> None:
    client = boto3_client_for(proxy.url, retries=NO_RETRY)
    session = DynamoDBSession("pop-once", client, table)
    await session.add_items([{"role": "user", "content": c} for c in ("a", "b", "c")])
    proxy.drop_response("PutItem", times=100)
    with pytest.raises(AmbiguousResultError):
        await session.pop_item(idempotency_key="pop-1")
    proxy.clear()
    assert await session.pop_item(idempotency_key="pop-1") == {"role": "user", "content": "c"}
    assert [i["content"] for i in await session.get_items()] == ["a", "b"]
    assert (await types(client, table, "pop-once")).count("item_popped") == 1
    assert await session.pop_item(idempotency_key="pop-2") == {"role": "user", "content": "b"}


async def test_key_from_the_run_context(proxy: FaultProxy, table: str) -> None:
    client = boto3_client_for(proxy.url, retries=NO_RETRY)
    session = DynamoDBSession("ctx-once", client, table)
    wrapper = RunContextWrapper(context={"idempotency_key": "run-7"})
    items = [{"role": "user", "content": "from a run"}]
    proxy.drop_response("PutItem", times=100)
    with pytest.raises(AmbiguousResultError):
        await session.add_items(items, wrapper=wrapper)
    proxy.clear()
    await session.add_items(items, wrapper=wrapper)
    await session.add_items([{"role": "assistant", "content": "reply"}], wrapper=wrapper)
    assert [i["content"] for i in await session.get_items()] == ["from a run", "reply"]
    proxy.drop_response("PutItem", times=100)
    with pytest.raises(AmbiguousResultError):
        await session.pop_item(wrapper=wrapper)
    proxy.clear()
    assert await session.pop_item(wrapper=wrapper) == {"role": "assistant", "content": "reply"}
    assert await session.pop_item(wrapper=wrapper) == {"role": "user", "content": "from a run"}
    assert await session.get_items() == []


async def test_bad_key_is_rejected_before_any_write(boto3_client: Any, table: str) -> None:
    session = DynamoDBSession("bad-key", boto3_client, table)
    with pytest.raises(InvalidInputError):
        await session.add_items([{"role": "user", "content": "x"}], idempotency_key="")
    assert await types(boto3_client, table, "bad-key") == []
