"""Helpers for the SDK's own session tests, ported to run against ``DynamoDBSession``.

The helpers ``run_agent_async`` and ``get_text_message`` are copied from the OpenAI
Agents SDK's tests (``tests/memory/test_session.py`` and ``tests/test_responses.py`` in
https://github.com/openai/openai-agents-python):

    MIT License

    Copyright (c) 2025 OpenAI

    Permission is hereby granted, free of charge, to any person obtaining a copy
    of this software and associated documentation files (the "Software"), to deal
    in the Software without restriction, including without limitation the rights
    to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
    copies of the Software, and to permit persons to whom the Software is
    furnished to do so, subject to the following conditions:

    The above copyright notice and this permission notice shall be included in all
    copies or substantial portions of the Software.

    THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
    IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
    FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
    AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
    LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
    OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
    SOFTWARE.

``make_session(session_id, **kwargs)`` builds the session under test; the
``session_factory`` fixture (imported by the test modules) decides which class that is:
``DynamoDBSession`` on the moto server, through a real boto3 client.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from agents import Runner
from openai.types.responses import ResponseOutputMessage, ResponseOutputText

from eventstore import DynamoDBSession

FACTORIES: list[Callable[..., Any]] = []


def make_session(session_id: str, **kwargs: Any) -> Any:
    """Build the session under test (the factory installed by ``session_factory``)."""
    return FACTORIES[-1](session_id, **kwargs)


@pytest.fixture
def session_factory(boto3_client: Any, table: str) -> Iterator[None]:
    """Install a factory building ``DynamoDBSession`` on a fresh table for this test."""

    def build(session_id: str, **kwargs: Any) -> DynamoDBSession:
        for sqlite_only in ("create_tables", "db_path"):
            kwargs.pop(sqlite_only, None)
        return DynamoDBSession(session_id, boto3_client, table, **kwargs)

    FACTORIES.append(build)
    yield
    FACTORIES.pop()


async def close(session: Any) -> None:
    """Close a session whether its ``close`` is sync (SQLite) or async (DynamoDB)."""
    result = session.close()
    if inspect.isawaitable(result):
        await result


def get_text_message(content: str) -> ResponseOutputMessage:
    return ResponseOutputMessage(
        id="1",
        type="message",
        role="assistant",
        content=[ResponseOutputText(text=content, type="output_text", annotations=[], logprobs=[])],
        status="completed",
    )


def _run_sync_wrapper(agent: Any, input_data: Any, **kwargs: Any) -> Any:
    """Wrapper for run_sync that properly sets up an event loop."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return Runner.run_sync(agent, input_data, **kwargs)
    finally:
        loop.close()


async def run_agent_async(runner_method: str, agent: Any, input_data: Any, **kwargs: Any) -> Any:
    """Helper function to run agent with different methods."""
    if runner_method == "run":
        return await Runner.run(agent, input_data, **kwargs)
    if runner_method == "run_sync":
        return await asyncio.to_thread(_run_sync_wrapper, agent, input_data, **kwargs)
    if runner_method == "run_streamed":
        result = Runner.run_streamed(agent, input_data, **kwargs)
        async for _event in result.stream_events():
            pass
        return result
    raise ValueError(f"Unknown runner method: {runner_method}")
