"""Branches in the log: no copy, no conflict, and the operator's tools understand them."""

from __future__ import annotations

import asyncio
from typing import Any

from convlog.audit import replay, verify_session
from convlog.local import EmbeddedEndpoint
from convlog.purge import execute_purge, plan_purge
from eventstore import DynamoDBSession
from eventstore.client import wrap_client
from eventstore.log import EventLog
from eventstore.views import read_views
from tests.integration.projection_support import make_pump


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


async def three_turns(session: DynamoDBSession) -> None:
    for n in (1, 2, 3):
        await session.add_items([user(f"q{n}"), {"role": "assistant", "content": f"a{n}"}])


async def test_a_branch_points_at_its_parent_instead_of_copying(
    boto3_client: Any, table: str
) -> None:
    session = DynamoDBSession("b", boto3_client, table)
    await three_turns(session)
    await session.create_branch_from_turn(2, "alt")
    log = EventLog(boto3_client, table)
    events = [s async for s in log.iter_events("b#branch#alt")]
    assert [s.event.type for s in events] == ["branch_created"]
    created = events[0].event
    assert created.type == "branch_created"
    head = await log.read_head("b")
    assert (created.parent_session, created.parent_seq, created.parent_hash, created.keep) == (
        "b", head.seq, head.hash, 2)
    assert [i["content"] for i in await session.get_items()] == ["q1", "a1"]
    assert [i["content"] for i in await session.get_items(limit=1)] == ["a1"]
    assert await session.pop_item() == {"role": "assistant", "content": "a1"}
    assert [i["content"] for i in await session.get_items(branch_id="main")] == [
        "q1", "a1", "q2", "a2", "q3", "a3"]


async def test_appends_on_two_branches_never_conflict(boto3_client: Any, table: str) -> None:
    main = DynamoDBSession("c", boto3_client, table)
    await three_turns(main)
    alt = DynamoDBSession("c", boto3_client, table)
    await alt.create_branch_from_turn(3, "alt")
    await asyncio.gather(*(
        s.add_items([user(f"{name}{i}")]) for i in range(5)
        for s, name in ((main, "m"), (alt, "x"))
    ))
    main_items = [i["content"] for i in await main.get_items()]
    alt_items = [i["content"] for i in await alt.get_items()]
    assert sorted(main_items[6:]) == [f"m{i}" for i in range(5)]
    assert alt_items[:4] == ["q1", "a1", "q2", "a2"]
    assert sorted(alt_items[4:]) == [f"x{i}" for i in range(5)]


async def test_replay_verify_and_projector_understand_branches(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str
) -> None:
    session = DynamoDBSession("r", boto3_client, table, user_id="u1")
    await three_turns(session)
    await session.create_branch_from_turn(2, "alt")
    await session.add_items([user("other q2")])
    log = EventLog(boto3_client, table)
    state = await replay(log, "r#branch#alt")
    assert [i["content"] for i in state.items] == ["q1", "a1", "other q2"]
    assert [s.event.type for s in state.events] == ["branch_created", "items_added"]
    assert (await verify_session(log, "r#branch#alt")).ok
    assert (await verify_session(log, "r")).ok
    make_pump(endpoint, table).drain()
    views = await read_views(wrap_client(boto3_client), table, "r#branch#alt")
    assert views.snapshot is not None
    assert [i["content"] for i in views.snapshot.items()] == ["q1", "a1", "other q2"]
    fresh = DynamoDBSession("r", boto3_client, table)
    assert await fresh.get_items(branch_id="alt") == views.snapshot.items()


async def test_purge_of_a_session_erases_its_branches(boto3_client: Any, table: str) -> None:
    session = DynamoDBSession("p", boto3_client, table)
    await three_turns(session)
    await session.create_branch_from_turn(2, "alt")
    await session.create_branch_from_turn(1, "alt2")
    db = wrap_client(boto3_client)
    plan = await plan_purge(db, table, session_id="p")
    assert set(plan.sessions) == {"p", "p#branch#alt", "p#branch#alt2"}
    await execute_purge(db, table, plan)
    log = EventLog(boto3_client, table)
    for sid in plan.sessions:
        assert [s async for s in log.iter_events(sid)] == []


async def test_verify_checks_the_branch_origin(boto3_client: Any, table: str) -> None:
    session = DynamoDBSession("v", boto3_client, table)
    await three_turns(session)
    await session.create_branch_from_turn(2, "alt")
    log = EventLog(boto3_client, table)
    assert (await verify_session(log, "v#branch#alt")).ok
    head = await log.read_head("v")
    boto3_client.delete_item(TableName=table, Key={
        "pk": {"S": "SESSION#v"}, "sk": {"S": f"EVENT#{head.seq:012d}"}})
    report = await verify_session(log, "v#branch#alt")
    assert not report.ok and report.problem is not None
    assert report.problem.seq == 1 and "no longer holds" in report.problem.message


async def test_rebuild_of_a_branch_starts_from_its_parent(boto3_client: Any, table: str) -> None:
    from convlog.rebuild import rebuild_session
    from stream_handlers.projector import build_handler

    session = DynamoDBSession("rb", boto3_client, table)
    await three_turns(session)
    await session.create_branch_from_turn(3, "alt")
    await session.add_items([user("instead")])
    log = EventLog(boto3_client, table)
    fed = await rebuild_session(log, "rb#branch#alt", build_handler(boto3_client, table),
                                reset=True)
    assert fed == 2
    views = await read_views(wrap_client(boto3_client), table, "rb#branch#alt")
    assert views.snapshot is not None
    assert [i["content"] for i in views.snapshot.items()] == [
        "q1", "a1", "q2", "a2", "instead"]


async def test_clear_session_ends_every_branch_in_the_log(boto3_client: Any, table: str) -> None:
    session = DynamoDBSession("cl", boto3_client, table, ttl_seconds=3600)
    await three_turns(session)
    await session.create_branch_from_turn(2, "alt")
    await session.add_items([user("x")])
    await session.clear_session()
    log = EventLog(boto3_client, table)
    alt = [s async for s in log.iter_events("cl#branch#alt")]
    assert [s.event.type for s in alt] == ["branch_created", "items_added", "branch_deleted"]
    assert all(s.ttl is not None for s in alt)
    assert alt[-1].ttl >= max(s.ttl or 0 for s in alt[:-1])  # the TTL rule
    main = [s async for s in log.iter_events("cl")]
    assert main[-1].event.type == "session_cleared"
    assert (await verify_session(log, "cl#branch#alt")).ok
    assert await session.get_items(branch_id="alt") == [] and await session.get_items() == []
    assert await session.list_branches() == []
