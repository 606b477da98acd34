"""convlog's own CPU in ``get_items``: the read replayed from canned responses, no I/O.

A real read on the embedded endpoint is recorded once (the parsed responses, exactly as
botocore returned them); ``CannedClient`` then answers the same requests from memory,
so what is timed is convlog alone: decoding the snapshot and the events, the fold, the
copies it hands back. Time is the thread's CPU time (``time.thread_time``), the median
over many calls, so other work on the machine does not count.

Example:
    ```python
    canned = await record(session_factory, client, table, "s1", lambda s: s.get_items())
    print(await own_cpu_ms(canned, table, "s1", lambda s: s.get_items()))
    ```
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from eventstore import DynamoDBSession
from eventstore.client import DynamoClient

Read = Callable[[DynamoDBSession], Awaitable[Any]]
CPU_CALLS = 40


def _request_key(operation: str, kwargs: dict[str, Any]) -> str:
    return operation + repr(kwargs)  # the same code builds the same request, keys in order


class RecordingClient(DynamoClient):
    """A real client that keeps every response it returns, with the request it answered."""

    def __init__(self, raw: Any) -> None:
        super().__init__(raw)
        self.responses: list[tuple[str, dict[str, Any]]] = []

    async def call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        response = await super().call(operation, **kwargs)
        self.responses.append((_request_key(operation, kwargs), response))
        return response


class CannedClient(DynamoClient):
    """Answers the recorded requests from memory (by request: some are sent at once)."""

    def __init__(self, raw: Any, responses: list[tuple[str, dict[str, Any]]]) -> None:
        super().__init__(raw)
        self.responses = dict(responses)

    async def call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        return self.responses[_request_key(operation, kwargs)]


async def record(
    raw: Any, table: str, session_id: str, read: Read
) -> list[tuple[str, dict[str, Any]]]:
    """The responses one real ``read`` receives."""
    recorder = RecordingClient(raw)
    await read(DynamoDBSession(session_id, recorder, table))
    return recorder.responses


async def own_cpu_ms(
    raw: Any, responses: list[tuple[str, dict[str, Any]]], table: str, session_id: str,
    read: Read,
    calls: int = CPU_CALLS,
) -> float:
    """Median CPU milliseconds of ``read`` answered from ``responses`` (no I/O)."""
    samples: list[float] = []
    for _ in range(calls):
        canned = CannedClient(raw, responses)
        session = DynamoDBSession(session_id, canned, table)
        start = time.thread_time()
        await read(session)
        samples.append((time.thread_time() - start) * 1000)
        await asyncio.sleep(0)
    return statistics.median(samples)
