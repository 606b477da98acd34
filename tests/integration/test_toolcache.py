"""The tool-result cache: ToolCache API, cached_tool in Runner.run, the projector's entries."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from agents import Agent, Runner, function_tool
from agents.testing import ScriptedModel, assistant_message, function_call
from conftest import RequestCounter
from projection_support import make_pump

from eventstore import DynamoDBSession, ToolCache, cached_tool
from eventstore.errors import InvalidInputError
from eventstore.views import arguments_hash


class Clock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


async def test_put_get_hits_and_canonical_arguments(boto3_client: Any, table: str) -> None:
    cache = ToolCache(boto3_client, table)
    assert await cache.get("add", {"a": 1, "b": 2}) is None
    await cache.put("add", {"a": 1, "b": 2}, "3", ttl_seconds=60, session_id="s1", call_id="c1")
    first = await cache.get("add", '{ "b": 2,\n  "a": 1 }')
    second = await cache.get("add", {"b": 2, "a": 1})
    assert first is not None and second is not None
    assert (first.output, first.hits, second.hits) == ("3", 1, 2)
    assert (first.session_id, first.call_id) == ("s1", "c1")
    assert await cache.get("add", {"a": 1, "b": 3}) is None
    assert await cache.get("sub", {"a": 1, "b": 2}) is None
    assert arguments_hash({"x": [1, {"z": 1, "y": 2}]}) == arguments_hash('{"x":[1,{"y":2,"z":1}]}')
    assert arguments_hash({"x": [1, 2]}) != arguments_hash({"x": [2, 1]})


async def test_hit_counter_is_atomic(aio_client: Any, table: str) -> None:
    cache = ToolCache(aio_client, table)
    await cache.put("lookup", {"q": "x"}, {"rows": [1, 2]})
    hits = await asyncio.gather(*(cache.get("lookup", {"q": "x"}) for _ in range(12)))
    assert sorted(h.hits for h in hits if h is not None) == list(range(1, 13))
    assert all(h is not None and h.output == {"rows": [1, 2]} for h in hits)


async def test_expired_entries_are_misses(boto3_client: Any, table: str) -> None:
    clock = Clock(1_900_000_000.0)
    cache = ToolCache(boto3_client, table, clock=clock)
    await cache.put("weather", {"city": "Oslo"}, "snow", ttl_seconds=30)
    clock.now += 29
    assert await cache.get("weather", {"city": "Oslo"}) is not None
    assert await cache.get("weather", {"city": "Oslo"}, max_age_seconds=10) is None
    clock.now += 1
    assert await cache.get("weather", {"city": "Oslo"}) is None  # item still stored
    key = {"pk": {"S": "TOOL#weather"}, "sk": {"S": "ARGS#" + arguments_hash({"city": "Oslo"})}}
    assert boto3_client.get_item(TableName=table, Key=key)["Item"]["hits"] == {"N": "1"}


async def test_invalidate_one_or_all(boto3_client: Any, table: str) -> None:
    cache = ToolCache(boto3_client, table)
    for n in range(30):
        await cache.put("square", {"n": n}, str(n * n))
    await cache.put("cube", {"n": 2}, "8")
    assert await cache.invalidate("square", {"n": 3}) == 1
    assert await cache.invalidate("square", {"n": 3}) == 0
    assert await cache.get("square", {"n": 3}) is None
    assert await cache.invalidate("square") == 29
    assert await cache.get("square", {"n": 4}) is None
    assert (await cache.get("cube", '{"n": 2}')) is not None


async def test_bad_input_is_rejected_before_any_request(boto3_client: Any, table: str) -> None:
    counter = RequestCounter(boto3_client)
    cache = ToolCache(boto3_client, table)
    with pytest.raises(InvalidInputError):
        await cache.get("add", "{not json")
    with pytest.raises(InvalidInputError):
        await cache.get("", {})
    with pytest.raises(InvalidInputError):
        await cache.put("add", {}, {1, 2})
    with pytest.raises(InvalidInputError):
        await cache.put("add", {}, "x" * 400_000)
    with pytest.raises(InvalidInputError):
        await cache.put("add", {}, "3", ttl_seconds=0)
    with pytest.raises(InvalidInputError):
        cached_tool(cache)(lambda x: x)
    assert counter.total == 0


def weather_agent(cache: ToolCache, calls: list[tuple[str, str]], model: ScriptedModel) -> Agent:
    @function_tool
    async def get_weather(city: str, unit: str) -> str:
        """Current weather in a city."""
        calls.append((city, unit))
        return f"{city}: 21 {unit}"

    cached = cached_tool(cache, ttl_seconds=300)(get_weather)
    return Agent(name="forecaster", model=model, tools=[cached])


async def test_second_identical_call_in_a_conversation_is_served_from_the_cache(
    boto3_client: Any, table: str
) -> None:
    clock = Clock(2_000_000_000.0)
    cache = ToolCache(boto3_client, table, clock=clock)
    calls: list[tuple[str, str]] = []
    model = ScriptedModel([
        [function_call("get_weather", {"city": "Paris", "unit": "C"}, call_id="c1")],
        [assistant_message("It is 21 C in Paris.")],
        [function_call("get_weather", '{ "unit": "C",  "city": "Paris" }', call_id="c2")],
        [assistant_message("Still 21 C.")],
        [function_call("get_weather", {"city": "Paris", "unit": "C"}, call_id="c3")],
        [assistant_message("Fresh: 21 C.")],
    ])
    agent = weather_agent(cache, calls, model)
    session = DynamoDBSession("trip", boto3_client, table, user_id="ann")
    await Runner.run(agent, "Weather in Paris?", session=session)
    await Runner.run(agent, "And now?", session=session)
    assert calls == [("Paris", "C")]  # the body ran once, key order and spaces did not matter
    outputs = [i["output"] for i in await session.get_items()
               if i.get("type") == "function_call_output"]
    assert outputs == ["Paris: 21 C", "Paris: 21 C"]
    hit = await cache.get("get_weather", {"city": "Paris", "unit": "C"})
    assert hit is not None and hit.hits == 2 and hit.call_id == "c1"

    clock.now += 301  # past the tool's TTL: a miss, the body runs again
    await Runner.run(agent, "One more time?", session=session)
    assert calls == [("Paris", "C"), ("Paris", "C")]
    assert model.remaining_steps == 0


async def test_projector_fills_the_cache_from_session_events(
    endpoint: Any, boto3_client: Any, table: str
) -> None:
    writer = DynamoDBSession("other-worker", boto3_client, table)
    await writer.add_items([{"type": "function_call", "call_id": "w1", "name": "get_weather",
                             "arguments": json.dumps({"unit": "F", "city": "Rome"})}])
    await writer.add_items([{"type": "function_call_output", "call_id": "w1",
                             "output": "Rome: 75 F"}])
    assert make_pump(endpoint, table).drain() == 2

    cache = ToolCache(boto3_client, table)
    calls: list[tuple[str, str]] = []
    model = ScriptedModel([
        [function_call("get_weather", {"city": "Rome", "unit": "F"}, call_id="r1")],
        [assistant_message("75 F in Rome.")],
    ])
    await Runner.run(weather_agent(cache, calls, model), "Rome?")
    assert calls == []
    hit = await cache.get("get_weather", {"city": "Rome", "unit": "F"})
    assert hit is not None and hit.session_id == "other-worker" and hit.hits == 2


async def test_tool_errors_are_not_cached(boto3_client: Any, table: str) -> None:
    cache = ToolCache(boto3_client, table)
    attempts: list[int] = []

    @function_tool
    async def flaky(n: int) -> str:
        """Fails the first time."""
        attempts.append(n)
        if len(attempts) == 1:
            raise RuntimeError("upstream down")
        return f"ok {n}"

    model = ScriptedModel([
        [function_call("flaky", {"n": 1}, call_id="f1")], [assistant_message("failed")],
        [function_call("flaky", {"n": 1}, call_id="f2")], [assistant_message("worked")],
        [function_call("flaky", {"n": 1}, call_id="f3")], [assistant_message("cached")],
    ])
    agent = Agent(name="a", model=model, tools=[cached_tool(cache, ttl_seconds=60)(flaky)])
    for prompt in ("try", "again", "once more"):
        await Runner.run(agent, prompt)
    assert attempts == [1, 1]
