"""Helpers shared by the CLI tests: run ``convlog`` in-process and read the table raw."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from convlog.cli import main
from convlog.local import EmbeddedEndpoint

T = TypeVar("T")


@dataclass
class Result:
    code: int
    out: str
    err: str


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def cli(
    capsys: pytest.CaptureFixture[str], endpoint: EmbeddedEndpoint, table: str, *args: str
) -> Result:
    """Run ``convlog ARGS --endpoint-url URL --table TABLE`` in-process."""
    capsys.readouterr()
    code = main([*args, "--endpoint-url", endpoint.url, "--table", table])
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def scan(client: Any, table: str) -> list[dict[str, Any]]:
    """Every item of the table (consistent, paged)."""
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        page = client.scan(**params)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def key_of(item: dict[str, Any]) -> tuple[str, str]:
    return item["pk"]["S"], item["sk"]["S"]


def event_key(session_id: str, seq: int) -> dict[str, Any]:
    return {"pk": {"S": f"SESSION#{session_id}"}, "sk": {"S": f"EVENT#{seq:012d}"}}


def tool_turn(n: int, city: str, *, call_id: str | None = None) -> list[dict[str, Any]]:
    """A user message, a weather tool call and its output, and an answer."""
    cid = call_id or f"call_{n}"
    return [
        {"role": "user", "content": f"weather in {city}? ({n})"},
        {"type": "function_call", "name": "get_weather", "call_id": cid,
         "arguments": f'{{"city":"{city}"}}', "id": cid},
        {"type": "function_call_output", "call_id": cid, "output": f"sunny in {city}"},
        {"role": "assistant", "content": f"It is sunny in {city}."},
    ]


def count_cli_clients(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Count the requests of every client the CLI makes: one ``RequestCounter`` each."""
    from conftest import RequestCounter

    import convlog.cli as cli_module

    counters: list[Any] = []
    real = cli_module.make_client

    def counted(service: str, url: str | None, region: str | None) -> Any:
        client = real(service, url, region)
        counters.append(RequestCounter(client))
        return client

    monkeypatch.setattr(cli_module, "make_client", counted)
    return counters
