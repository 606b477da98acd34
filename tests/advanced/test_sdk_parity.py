"""SDK parity details: ``DynamoDBSession`` is a ``SessionABC`` and takes the run context."""

from __future__ import annotations

from typing import Any

from agents import Agent, Runner
from agents.memory import SessionABC, SessionSettings
from agents.memory.session import _session_accepts_wrapper
from agents.testing import ScriptedModel, assistant_message

from eventstore import DynamoDBSession


def test_is_a_session_abc_with_default_settings(boto3_client: Any, table: str) -> None:
    session = DynamoDBSession("abc", boto3_client, table)
    assert isinstance(session, SessionABC)
    assert isinstance(session.session_settings, SessionSettings)
    assert session.session_settings.limit is None


async def test_runner_passes_the_run_context(boto3_client: Any, table: str) -> None:
    seen: list[Any] = []

    class Recording(DynamoDBSession):
        async def add_items(self, items: list[Any], *, wrapper: Any = None) -> None:
            seen.append(wrapper)
            await super().add_items(items, wrapper=wrapper)

    session = Recording("ctx", boto3_client, table)
    assert _session_accepts_wrapper(session)
    agent = Agent(name="a", model=ScriptedModel([[assistant_message("hi")]]))
    await Runner.run(agent, "hello", session=session, context={"tenant": "t1"})
    assert seen and all(w is not None and w.context == {"tenant": "t1"} for w in seen)
    assert (await session.get_items())[0].get("content") == "hello"
