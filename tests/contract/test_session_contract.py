"""One behavioural contract for every session backend (eventsourcing-style).

``SessionContract`` holds the tests; each backend subclass provides a ``factory`` fixture
that builds a session for a session id. The SDK's own ``SQLiteSession`` runs the same
tests as the reference, so a test that fails only for ``DynamoDBSession`` is a deviation
from the SDK's behaviour.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, Runner, function_tool
from agents.memory import Session, SessionSettings, SQLiteSession
from agents.testing import ScriptedModel, assistant_message, function_call

from eventstore import DynamoDBSession

Factory = Callable[..., Any]


def msg(role: str, text: str) -> dict[str, Any]:
    return {"role": role, "content": text}


HOSTILE = [
    'quotes " and \' and `backticks`',
    "back\\slash \\\\ \\u0000 \\n literal",
    "NUL \x00 inside, bell \x07, esc \x1b",
    "emoji 🧪🚀👩‍👩‍👧 and combining é",
    "</script><script>alert(1)</script>",
    "JSON-ish {\"a\": [1, 2]} ] } ,",
    "newlines\r\n\ttabs\u2028\u2029",
    "right-to-left \u202e txet",
    "日本語のテキスト と 中文 и кириллица",
    "x" * 100_000,
]


class SessionContract:
    """Behaviour every session must show; subclasses supply ``factory``."""

    @pytest.fixture
    def factory(self) -> Factory:
        raise NotImplementedError

    async def test_is_an_sdk_session(self, factory: Factory) -> None:
        session = factory("proto")
        assert isinstance(session, Session)
        assert session.session_id == "proto"

    async def test_empty_session(self, factory: Factory) -> None:
        session = factory("empty")
        assert await session.get_items() == []
        assert await session.get_items(limit=3) == []
        assert await session.pop_item() is None

    async def test_add_then_get_in_order(self, factory: Factory) -> None:
        session = factory("order")
        await session.add_items([msg("user", "one"), msg("assistant", "two")])
        await session.add_items([msg("user", "three")])
        assert await session.get_items() == [
            msg("user", "one"), msg("assistant", "two"), msg("user", "three"),
        ]

    @pytest.mark.parametrize("limit", [0, 1, 3, 7, 8, 50])
    async def test_limit(self, factory: Factory, limit: int) -> None:
        session = factory(f"limit-{limit}")
        items = [msg("user", f"m{i}") for i in range(8)]
        await session.add_items(items[:3])
        await session.add_items(items[3:4])
        await session.add_items(items[4:])
        expected = items[-limit:] if limit else []
        assert await session.get_items(limit=limit) == expected

    async def test_limit_counts_live_items_after_pops(self, factory: Factory) -> None:
        session = factory("limit-pops")
        await session.add_items([msg("user", f"m{i}") for i in range(6)])
        assert await session.pop_item() == msg("user", "m5")
        assert await session.pop_item() == msg("user", "m4")
        await session.add_items([msg("user", "n")])
        assert await session.get_items(limit=2) == [msg("user", "m3"), msg("user", "n")]
        assert await session.get_items(limit=4) == [
            msg("user", "m1"), msg("user", "m2"), msg("user", "m3"), msg("user", "n"),
        ]

    async def test_pop_until_empty_then_none(self, factory: Factory) -> None:
        session = factory("pop")
        items = [msg("user", f"p{i}") for i in range(5)]
        await session.add_items(items[:2])
        await session.add_items(items[2:])
        popped = [await session.pop_item() for _ in range(5)]
        assert popped == list(reversed(items))
        assert await session.pop_item() is None
        assert await session.pop_item() is None
        assert await session.get_items() == []
        await session.add_items([msg("user", "again")])
        assert await session.get_items() == [msg("user", "again")]

    async def test_clear(self, factory: Factory) -> None:
        session = factory("clear")
        await session.add_items([msg("user", "a"), msg("user", "b")])
        await session.clear_session()
        assert await session.get_items() == []
        assert await session.pop_item() is None
        await session.add_items([msg("user", "c")])
        assert await session.get_items() == [msg("user", "c")]
        await session.clear_session()
        await session.clear_session()
        assert await session.get_items(limit=5) == []

    async def test_sessions_are_isolated(self, factory: Factory) -> None:
        first, second = factory("iso-a"), factory("iso-b")
        prefix = factory("iso")  # a prefix of the other ids must not see their items
        await first.add_items([msg("user", "for a")])
        await second.add_items([msg("user", "for b")])
        assert await first.get_items() == [msg("user", "for a")]
        assert await second.get_items() == [msg("user", "for b")]
        assert await prefix.get_items() == []
        await first.clear_session()
        assert await second.get_items() == [msg("user", "for b")]
        assert await second.pop_item() == msg("user", "for b")
        assert await first.get_items() == []

    async def test_same_id_seen_by_a_second_object(self, factory: Factory) -> None:
        writer, reader = factory("shared"), factory("shared")
        await writer.add_items([msg("user", "x")])
        assert await reader.get_items() == [msg("user", "x")]
        assert await reader.pop_item() == msg("user", "x")
        assert await writer.get_items() == []

    async def test_pops_see_what_another_object_wrote(self, factory: Factory) -> None:
        mine, other = factory("two-objects"), factory("two-objects")
        assert await mine.pop_item() is None
        await other.add_items([msg("user", "x")])
        assert await mine.pop_item() == msg("user", "x")
        assert await mine.get_items() == []
        await other.add_items([msg("user", "y"), msg("user", "z")])
        assert await mine.pop_item() == msg("user", "z")
        assert await mine.get_items() == [msg("user", "y")]
        await other.clear_session()
        assert await mine.pop_item() is None
        await other.add_items([msg("user", "w")])
        assert await other.pop_item() == msg("user", "w")
        await mine.add_items([msg("user", "v")])
        assert await other.pop_item() == msg("user", "v")
        assert await mine.pop_item() is None

    async def test_unicode_and_json_hostile_strings(self, factory: Factory) -> None:
        session = factory("hostile \"id\" / ünïcode 🧪 </script>")
        items = [msg("user", text) for text in HOSTILE]
        items.append({"role": "user", "content": [{"type": "input_text", "text": HOSTILE[1]}],
                      "weird key \" \\ \x00 🧪": {"nested": [None, True, 1.5, -7, "\x00"]}})
        await session.add_items(items[:5])
        await session.add_items(items[5:])
        got = await session.get_items()
        assert got == items
        assert json.dumps(got, sort_keys=True) == json.dumps(items, sort_keys=True)
        assert await session.pop_item() == items[-1]
        assert await session.get_items(limit=2) == items[-3:-1]

    async def test_mutating_items_later_changes_nothing_stored(self, factory: Factory) -> None:
        session = factory("alias")

        def original() -> dict[str, Any]:
            return {"role": "user", "content": [{"type": "input_text", "text": "orig"}]}

        assert await session.get_items() == []
        item = original()
        await session.add_items([item])
        item["content"][0]["text"] = "changed after add_items"
        assert await session.pop_item() == original()
        await session.add_items([original(), original()])
        got = await session.get_items()
        got[-1]["content"][0]["text"] = "changed after get_items"
        assert await session.pop_item() == original()
        assert await session.get_items() == [original()]

    async def test_empty_add_items_is_a_no_op(self, factory: Factory) -> None:
        session = factory("noop")
        await session.add_items([])
        assert await session.get_items() == []
        await session.add_items([msg("user", "a")])
        await session.add_items([])
        assert await session.get_items() == [msg("user", "a")]
        assert await session.pop_item() == msg("user", "a")
        assert await session.pop_item() is None

    async def test_session_settings_limit(self, factory: Factory) -> None:
        session = factory("settings", session_settings=SessionSettings(limit=2))
        assert session.session_settings is not None
        assert session.session_settings.limit == 2
        items = [msg("user", f"s{i}") for i in range(5)]
        await session.add_items(items)
        assert await session.get_items() == items[-2:]
        assert await session.get_items(limit=4) == items[-4:]
        assert await session.get_items(limit=0) == []
        as_dict = factory("settings", session_settings={"limit": 3})
        assert await as_dict.get_items() == items[-3:]

    async def test_runner_round_trip_with_tool_call(self, factory: Factory) -> None:
        calls: list[str] = []

        @function_tool
        def get_weather(city: str) -> str:
            """Return the weather for a city."""
            calls.append(city)
            return f"sunny in {city}"

        model = ScriptedModel([
            [function_call("get_weather", {"city": "Paris"}, call_id="call-1")],
            [assistant_message("It is sunny in Paris.", item_id="msg-1")],
            [assistant_message("You asked about Paris.", item_id="msg-2")],
        ])
        agent = Agent(name="weather", instructions="Be brief.", model=model,
                      tools=[get_weather])
        session = factory("runner")

        first = await Runner.run(agent, "Weather in Paris?", session=session)
        assert first.final_output == "It is sunny in Paris."
        assert calls == ["Paris"]
        history = await session.get_items()
        kinds = [item.get("type", item.get("role")) for item in history]
        assert kinds == ["user", "function_call", "function_call_output", "message"]
        assert history[0]["content"] == "Weather in Paris?"
        assert history[1]["call_id"] == history[2]["call_id"] == "call-1"
        assert history[2]["output"] == "sunny in Paris"

        second = await Runner.run(agent, "What did I ask?", session=session)
        assert second.final_output == "You asked about Paris."
        seen = model.last_call.input if model.last_call else None
        assert isinstance(seen, list)
        assert seen[: len(history)] == history
        assert seen[-1]["content"] == "What did I ask?"
        model.assert_complete()
        after = await session.get_items()
        assert after[: len(history)] == history
        assert len(after) == len(history) + 2
        assert after[-1]["content"][0]["text"] == "You asked about Paris."


class TestSQLiteReference(SessionContract):
    """The SDK's own ``SQLiteSession``: the reference behaviour."""

    @pytest.fixture
    async def factory(self, tmp_path: Path) -> AsyncIterator[Factory]:
        made: list[SQLiteSession] = []

        def make(session_id: str, **kwargs: Any) -> SQLiteSession:
            session = SQLiteSession(session_id, tmp_path / "ref.db", **kwargs)
            made.append(session)
            return session

        yield make
        for session in made:
            session.close()


class TestDynamoDBSessionBoto3(SessionContract):
    """``DynamoDBSession`` with a boto3 client, over HTTP to moto's server."""

    @pytest.fixture
    def factory(self, boto3_client: Any, table: str) -> Factory:
        def make(session_id: str, **kwargs: Any) -> DynamoDBSession:
            return DynamoDBSession(session_id, boto3_client, table, **kwargs)

        return make


class TestDynamoDBSessionAiobotocore(SessionContract):
    """``DynamoDBSession`` with an aiobotocore client, over HTTP to moto's server."""

    @pytest.fixture
    def factory(self, aio_client: Any, table: str) -> Factory:
        def make(session_id: str, **kwargs: Any) -> DynamoDBSession:
            return DynamoDBSession(session_id, aio_client, table, **kwargs)

        return make
