"""Compaction through the SDK's real ``OpenAIResponsesCompactionSession``.

The Responses API is a stub: an ``httpx2.MockTransport`` (openai 3's HTTP library) behind a
real ``AsyncOpenAI``
client answers ``POST /responses/compact`` (and counts the calls). The store is
``DynamoDBSession`` on the moto server.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2 as httpx
from agents import Agent, Runner
from agents.memory import OpenAIResponsesCompactionSession
from agents.testing import ScriptedModel, assistant_message
from openai import AsyncOpenAI

from convlog.audit import replay, verify_session
from eventstore import DynamoDBSession
from eventstore.log import EventLog

COMPACTED = [
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]},
    {"type": "compaction", "id": "cmp_1", "encrypted_content": "enc-summary"},
]


def stub_openai(
    calls: list[dict[str, Any]], before_answer: Callable[[], Awaitable[None]] | None = None
) -> AsyncOpenAI:
    """A real ``AsyncOpenAI`` whose transport answers ``responses.compact``."""

    async def handle(request: httpx.Request) -> httpx.Response:
        assert request.url.path.endswith("/responses/compact"), request.url.path
        calls.append(json.loads(request.content))
        if before_answer is not None:
            await before_answer()
        return httpx.Response(200, json={
            "id": "resp_cmp", "created_at": 0, "object": "response.compaction",
            "output": COMPACTED,
            "usage": {"input_tokens": 10, "output_tokens": 2, "total_tokens": 12,
                      "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens_details": {"reasoning_tokens": 0}},
        })

    return AsyncOpenAI(api_key="sk-test", base_url="http://stub.invalid/v1",
                       http_client=httpx.AsyncClient(transport=httpx.MockTransport(handle)))


async def event_types(client: Any, table: str, session_id: str) -> list[str]:
    return [s.event.type async for s in EventLog(client, table).iter_events(session_id)]


async def test_runner_compaction_is_one_conditional_append(boto3_client: Any, table: str) -> None:
    calls: list[dict[str, Any]] = []
    store = DynamoDBSession("cmp", boto3_client, table)
    session = OpenAIResponsesCompactionSession(
        "cmp", underlying_session=store, client=stub_openai(calls),
        should_trigger_compaction=lambda ctx: True,
    )
    agent = Agent(name="a", model=ScriptedModel([[assistant_message("hi there")]]))
    await Runner.run(agent, "hello", session=session)
    assert len(calls) == 1
    types = await event_types(boto3_client, table, "cmp")
    assert types.count("items_replaced") == 1
    before = types[: types.index("items_replaced")]
    assert "items_replaced" not in before and types[-1] == "items_replaced"
    items = await store.get_items()
    assert items[-1]["type"] == "compaction"
    assert json.dumps(items).count("hi there") == 0  # the reply was compacted away
    log = EventLog(boto3_client, table)
    state = await replay(log, "cmp")
    originals = [i for s in state.events if s.event.type == "items_added" for i in s.event.items]
    assert any(i.get("content") == "hello" for i in originals)
    assert "hi there" in json.dumps(originals)
    assert (await verify_session(log, "cmp")).ok
    assert state.items == items  # replay folds the replacement too


async def test_concurrent_append_makes_replacement_fail(boto3_client: Any, table: str) -> None:
    calls: list[dict[str, Any]] = []
    other = DynamoDBSession("race", boto3_client, table)

    async def someone_else_writes() -> None:
        await other.add_items([{"role": "user", "content": "written meanwhile"}])

    store = DynamoDBSession("race", boto3_client, table)
    session = OpenAIResponsesCompactionSession(
        "race", underlying_session=store, client=stub_openai(calls, someone_else_writes),
        should_trigger_compaction=lambda ctx: True,
    )
    agent = Agent(name="a", model=ScriptedModel([[assistant_message("first reply")]]))
    await Runner.run(agent, "hello", session=session)
    assert len(calls) == 1
    assert "items_replaced" not in await event_types(boto3_client, table, "race")
    contents = [i.get("content") for i in await store.get_items()]
    assert contents[0] == "hello" and contents[-1] == "written meanwhile"
    assert "first reply" in json.dumps(await store.get_items())


async def test_snapshot_replacement_is_bound_to_its_head(boto3_client: Any, table: str) -> None:
    store = DynamoDBSession("hook", boto3_client, table)
    await store.add_items([{"role": "user", "content": f"m{i}"} for i in range(4)])
    snapshot = await store._get_compaction_snapshot(3)
    assert snapshot is not None and not snapshot.complete
    assert [i["content"] for i in snapshot.items] == ["m1", "m2", "m3"]
    assert await snapshot.replace_suffix(1, [{"role": "user", "content": "sum"}])
    assert [i["content"] for i in await store.get_items()] == ["m0", "m1", "sum"]
    assert not await snapshot.replace_suffix(1, [{"role": "user", "content": "again"}])
    assert [i["content"] for i in await store.get_items(limit=2)] == ["m1", "sum"]


async def test_manual_compaction_replaces_everything_in_one_event(
    boto3_client: Any, table: str
) -> None:
    calls: list[dict[str, Any]] = []
    store = DynamoDBSession("manual", boto3_client, table)
    await store.add_items([{"role": "user", "content": "hello"},
                           {"role": "assistant", "content": "long answer"}])
    session = OpenAIResponsesCompactionSession("manual", underlying_session=store,
                                               client=stub_openai(calls))
    await session.run_compaction({"force": True, "compaction_mode": "input"})
    assert len(calls) == 1
    assert await event_types(boto3_client, table, "manual") == ["items_added", "items_replaced"]
    assert await store.get_items() == COMPACTED
    fresh = DynamoDBSession("manual", boto3_client, table)
    assert await fresh.get_items(limit=1) == COMPACTED[-1:]
