"""Usage totals: the projector sums usage events per session; list_sessions and
``convlog usage`` report them per session and per user."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest
from agents.usage import Usage

from convlog.local import EmbeddedEndpoint
from eventstore import DynamoDBSession, list_sessions
from eventstore.events import now_iso
from tests.integration.cli_helpers import cli
from tests.integration.projection_support import make_pump


def result(requests: int, tokens_in: int, tokens_out: int) -> Any:
    usage = Usage(requests=requests, input_tokens=tokens_in, output_tokens=tokens_out,
                  total_tokens=tokens_in + tokens_out)
    return SimpleNamespace(context_wrapper=SimpleNamespace(usage=usage))


async def converse(client: Any, table: str) -> str:
    one = DynamoDBSession("u-one", client, table, user_id="ann")
    await one.add_items([{"role": "user", "content": "hi"}])
    await one.store_run_usage(result(1, 100, 20))
    await one.add_items([{"role": "user", "content": "more"}])
    await one.store_run_usage(result(2, 200, 30))
    await one.pop_item()  # the turn is gone, the tokens were still spent
    middle = now_iso()
    await asyncio.sleep(0.01)
    two = DynamoDBSession("u-two", client, table, user_id="ann")
    await two.add_items([{"role": "user", "content": "hello"}])
    await two.store_run_usage(result(1, 50, 5))
    await DynamoDBSession("u-bob", client, table, user_id="bob").add_items(
        [{"role": "user", "content": "x"}])
    return middle


async def test_projector_keeps_per_session_totals(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str
) -> None:
    await converse(boto3_client, table)
    make_pump(endpoint, table).drain()
    page = await list_sessions(boto3_client, table, "ann")
    totals = {s.session_id: (s.requests, s.input_tokens, s.output_tokens, s.total_tokens)
              for s in page.sessions}
    assert totals == {"u-one": (3, 300, 50, 350), "u-two": (1, 50, 5, 55)}
    bob = await list_sessions(boto3_client, table, "bob")
    assert [(s.requests, s.total_tokens) for s in bob.sessions] == [(0, 0)]


def test_convlog_usage_per_user(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    middle = asyncio.run(converse(boto3_client, table))
    make_pump(endpoint, table).drain()
    shown = cli(capsys, endpoint, table, "usage", "--user", "ann")
    assert shown.code == 0
    total = next(line for line in shown.out.splitlines() if line.startswith("TOTAL"))
    assert total.split() == ["TOTAL", "4", "350", "55", "405"]
    since = cli(capsys, endpoint, table, "usage", "--user", "ann", "--since", middle,
                "--format", "json")
    data = json.loads(since.out)
    assert data["total"] == {"requests": 1, "input_tokens": 50, "output_tokens": 5,
                             "total_tokens": 55}
    assert [s["session_id"] for s in data["sessions"]] == ["u-two"]
    nobody = cli(capsys, endpoint, table, "usage", "--user", "carol")
    assert nobody.code == 0 and "no usage recorded" in nobody.out
