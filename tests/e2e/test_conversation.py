"""End to end: agents talk through DynamoDBSession; the projector keeps the views.

Runs against LocalStack (the deployed template, its event source mapping and Lambda) when
it answers at LOCALSTACK_HOST, else against the embedded endpoint on that port with the
local stream pump (see conftest.py). All clients come from localstack_client.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import agents
import pytest
from agents.testing import ScriptedModel, assistant_message, function_call

from convlog.cli import main as convlog
from eventstore import DynamoDBSession, EventLog, ToolCache, cached_tool, list_sessions
from eventstore.keys import META_SK, SNAPSHOT_SK, session_pk

from .e2e_support import E2EStack, RequestCounter

agents.set_tracing_disabled(True)


class Calculator:
    """An ``add`` function tool that counts how often its body really runs."""

    def __init__(self) -> None:
        self.runs = 0

        async def add(a: int, b: int) -> str:
            """Add two integers.

            Args:
                a: First addend.
                b: Second addend.
            """
            self.runs += 1
            return str(a + b)

        self.tool = agents.function_tool(add)


def tool_turn(arguments: str, call_id: str, answer: str) -> ScriptedModel:
    """A scripted model that calls ``add`` once, then answers."""
    return ScriptedModel([
        [function_call("add", arguments, call_id=call_id)],
        [assistant_message(answer)],
    ])


async def run(session: DynamoDBSession, tools: list[Any], model: ScriptedModel,
              text: str) -> str:
    agent = agents.Agent(name="calc", instructions="Add numbers with the tool.",
                         tools=tools, model=model)
    result = await agents.Runner.run(agent, text, session=session)
    model.assert_complete()
    return str(result.final_output)


async def get_item(client: Any, table: str, session_id: str, sk: str) -> dict[str, Any] | None:
    response = await asyncio.to_thread(
        client.get_item, TableName=table, ConsistentRead=True,
        Key={"pk": {"S": session_pk(session_id)}, "sk": {"S": sk}},
    )
    item: dict[str, Any] | None = response.get("Item")
    return item


async def test_conversation_with_a_tool_call_is_projected_and_read_from_the_snapshot(
    e2e: E2EStack, run_id: str
) -> None:
    client = e2e.client("dynamodb")
    session_id, user = f"conv-{run_id}", f"user-{run_id}"
    session = DynamoDBSession(session_id, client, e2e.table, user_id=user)
    calc = Calculator()
    assert await run(session, [calc.tool], tool_turn('{"a": 2, "b": 3}', "call-1", "5"),
                     "What is 2 + 3?") == "5"
    model = ScriptedModel([[assistant_message("You asked about 2 + 3.")]])
    assert await run(session, [calc.tool], model, "What did I ask?") == "You asked about 2 + 3."
    assert calc.runs == 1

    items = await session.get_items()
    kinds = [i.get("type", i.get("role")) for i in items]
    assert kinds == ["user", "function_call", "function_call_output", "message",
                     "user", "message"]
    assert items[2]["output"] == "5"
    head = await EventLog(client, e2e.table).read_head(session_id)

    async def projected() -> bool:
        meta = await get_item(client, e2e.table, session_id, META_SK)
        snapshot = await get_item(client, e2e.table, session_id, SNAPSHOT_SK)
        return (meta is not None and snapshot is not None
                and int(meta["seq"]["N"]) == head.seq == int(snapshot["seq"]["N"]))

    await e2e.settle(projected, f"views of {session_id} at seq {head.seq}")
    meta = await get_item(client, e2e.table, session_id, META_SK)
    assert meta is not None
    assert meta["user_id"]["S"] == user
    assert meta["gsi1pk"]["S"] == f"USER#{user}"

    # With a fresh snapshot the whole history is one request (one newest-first Query:
    # the snapshot, the meta item, the newest events), and exactly the same.
    reader = e2e.client("dynamodb")
    counter = RequestCounter(reader)
    fresh = DynamoDBSession(session_id, reader, e2e.table)
    assert await fresh.get_items() == items
    assert counter.counts == {"Query": 1}
    assert await fresh.get_items(limit=2) == items[-2:]


async def test_projected_tool_result_is_reused_by_a_cached_tool(
    e2e: E2EStack, run_id: str
) -> None:
    client = e2e.client("dynamodb")
    cache = ToolCache(client, e2e.table)
    calc = Calculator()
    first = DynamoDBSession(f"tool-a-{run_id}", client, e2e.table, user_id=f"u-{run_id}")
    a, b = 1000 + len(run_id), int(run_id, 16) % 997
    arguments = json.dumps({"a": a, "b": b})
    await run(first, [calc.tool], tool_turn(arguments, "call-a", "done"), "add")
    assert calc.runs == 1

    async def cached() -> bool:
        entry = await cache.get("add", {"b": b, "a": a})
        return entry is not None and entry.session_id == first.session_id

    await e2e.settle(cached, "the tool-cache entry of the first conversation")

    # Another conversation asks the same (arguments reordered): served from the cache.
    second = DynamoDBSession(f"tool-b-{run_id}", client, e2e.table, user_id=f"u-{run_id}")
    reordered = json.dumps({"b": b, "a": a})
    tool = cached_tool(cache, ttl_seconds=3600)(calc.tool)
    await run(second, [tool], tool_turn(reordered, "call-b", "done"), "add again")
    assert calc.runs == 1
    outputs = [i for i in await second.get_items() if i.get("type") == "function_call_output"]
    assert [o["output"] for o in outputs] == [str(a + b)]
    entry = await cache.get("add", arguments)
    assert entry is not None and entry.hits >= 3


async def test_user_listing_is_newest_first_and_paged(e2e: E2EStack, run_id: str) -> None:
    client = e2e.client("dynamodb")
    user, other = f"lister-{run_id}", f"other-{run_id}"
    ids = [f"list-{run_id}-{n}" for n in range(3)]
    for session_id in [*ids, f"list-{run_id}-x"]:
        owner = other if session_id.endswith("-x") else user
        session = DynamoDBSession(session_id, client, e2e.table, user_id=owner)
        model = ScriptedModel([[assistant_message("hello")]])
        await run(session, [], model, f"Hi, this is {session_id}")

    async def listed() -> bool:
        page = await list_sessions(client, e2e.table, user, limit=10)
        return sorted(s.session_id for s in page.sessions) == ids

    await e2e.settle(listed, f"the session index of {user}")
    page = await list_sessions(client, e2e.table, user, limit=2)
    assert [s.session_id for s in page.sessions] == [ids[2], ids[1]]
    assert page.cursor is not None
    rest = await list_sessions(client, e2e.table, user, limit=2, cursor=page.cursor)
    assert [s.session_id for s in rest.sessions] == [ids[0]]
    assert rest.sessions[0].title == f"Hi, this is {ids[0]}"
    assert all(s.item_count == 2 for s in [*page.sessions, *rest.sessions])


async def test_replay_and_verify_through_the_cli(
    e2e: E2EStack, run_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    client = e2e.client("dynamodb")
    session_id = f"audit-{run_id}"
    session = DynamoDBSession(session_id, client, e2e.table, user_id=f"auditor-{run_id}")
    for n in range(3):
        await run(session, [], ScriptedModel([[assistant_message(f"answer {n}")]]), f"q {n}")
    popped = await session.pop_item()
    assert popped is not None and popped["content"][0]["text"] == "answer 2"
    capsys.readouterr()

    assert convlog(["replay", session_id, "--at-seq", "4", "--format", "json",
                    *e2e.cli_args()]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [e["seq"] for e in document["events"]] == [1, 2, 3, 4]
    assert [i.get("content") for i in document["items"] if i.get("role") == "user"] == [
        "q 0", "q 1"]
    assert convlog(["replay", session_id, "--format", "json", *e2e.cli_args()]) == 0
    now = json.loads(capsys.readouterr().out)
    assert [e["type"] for e in now["events"]][-1] == "item_popped"
    assert now["items"] == await session.get_items()

    assert convlog(["verify", session_id, *e2e.cli_args()]) == 0
    assert "hash chain intact" in capsys.readouterr().out

    # Alter one stored event: verify names the broken link and exits 1.
    await asyncio.to_thread(
        client.update_item, TableName=e2e.table,
        Key={"pk": {"S": session_pk(session_id)}, "sk": {"S": "EVENT#000000000003"}},
        UpdateExpression="SET ts = :t", ExpressionAttributeValues={
            ":t": {"S": "2001-01-01T00:00:00.000Z"}},
    )
    assert convlog(["verify", session_id, *e2e.cli_args()]) == 1
    out = capsys.readouterr().out
    assert "BROKEN" in out and session_id in out and "3" in out


def test_probe_tells_free_busy_and_other_servers_apart(e2e: E2EStack) -> None:
    import socket

    from convlog.local import free_port

    from .e2e_support import probe

    port = free_port()
    assert probe("127.0.0.1", port) == "free"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # held, not answering
        assert probe("127.0.0.1", port) == "busy"
    if e2e.endpoint is not None:  # moto's server answers, but it is not LocalStack
        assert probe("127.0.0.1", e2e.endpoint.port) == "busy"
