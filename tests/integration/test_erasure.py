"""Issue 11, cases 1, 2, 7 and 8: erasure that stays erased, finds what it must, reads little.

All on the embedded endpoint. The projector is the real handler run by the local stream
pump: caught up before the purge, one batch behind it, or fed the whole stream again
from ``TRIM_HORIZON`` after it.
"""

from __future__ import annotations

import asyncio
import io
import uuid
from typing import Any

import pytest
from agents import Agent, Runner, function_tool
from agents.testing import ScriptedModel, assistant_message, function_call
from cli_helpers import cli, count_cli_clients, key_of, scan, tool_turn
from conftest import RequestCounter
from projection_support import dump, make_pump

from convlog.audit import verify_session
from convlog.local import EmbeddedEndpoint
from convlog.purge import execute_purge, plan_purge
from eventstore import DynamoDBSession, ToolCache, cached_tool, list_sessions
from eventstore.client import wrap_client
from eventstore.log import EventLog
from stream_handlers.projector import build_handler

SSN = "078-05-1120"


async def _erin(client: Any, table: str) -> tuple[str, DynamoDBSession]:
    sid = f"erin-{uuid.uuid4().hex[:6]}"
    session = DynamoDBSession(sid, client, table, user_id="erin")
    await session.add_items([{"role": "user", "content": f"my SSN is {SSN}"}])
    return sid, session


async def _assert_erased(client: Any, table: str, sid: str) -> None:
    assert SSN not in dump(scan(client, table))
    left = [i for i in scan(client, table) if key_of(i)[0] == f"SESSION#{sid}"]
    assert all("purged" in i for i in left), left  # only content-free tombstones
    assert all(set(i) <= {"pk", "sk", "purged", "seq", "ttl", "purged_at"} for i in left)
    assert await DynamoDBSession(sid, client, table).get_items() == []
    assert (await list_sessions(client, table, "erin")).sessions == []
    assert await ToolCache(client, table).get("get_weather", {"city": "Paris"}) is None
    report = await verify_session(EventLog(client, table), sid)
    assert report.ok, report.problem
    plan = await plan_purge(wrap_client(client), table, session_id=sid)
    assert plan.keys == [] and plan.cache_refs == []


@pytest.mark.parametrize("lag", ["caught-up", "one-batch-behind", "trim-horizon"])
async def test_purge_is_not_undone_by_the_projector(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, lag: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sid, session = await _erin(boto3_client, table)
    pump = make_pump(endpoint, table)
    pump.drain()
    await session.add_items(tool_turn(1, "Paris"))
    if lag != "one-batch-behind":
        pump.drain()
        assert await ToolCache(boto3_client, table).get("get_weather", {"city": "Paris"})
    result = await asyncio.to_thread(cli, capsys, endpoint, table, "purge", "--user", "erin",
                                     "--yes")
    assert result.code == 0, result.err
    pump.drain()
    if lag == "trim-horizon":
        make_pump(endpoint, table).drain()
    await _assert_erased(boto3_client, table, sid)
    again = await asyncio.to_thread(cli, capsys, endpoint, table, "purge", "--user", "erin",
                                    "--yes")
    assert again.code == 1 and "nothing to purge" in again.out


async def test_cached_tool_results_have_an_owner_and_are_purged_with_projection_off(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str
) -> None:
    cache = ToolCache(boto3_client, table)

    @function_tool
    async def get_weather(city: str) -> str:
        """Weather of a city."""
        return f"{city}: clear, and erin's SSN is {SSN}"

    model = ScriptedModel([[function_call("get_weather", {"city": "Paris"}, call_id="k1")],
                           [assistant_message("Clear.")]])
    agent = Agent(name="a", model=model, tools=[cached_tool(cache, ttl_seconds=600)(get_weather)])
    sid = f"erin-{uuid.uuid4().hex[:6]}"
    session = DynamoDBSession(sid, boto3_client, table, user_id="erin")
    await Runner.run(agent, "Weather?", session=session)
    make_pump(endpoint, table, build_handler(endpoint.client("dynamodb"), table,
                                             tool_ttl_seconds=0)).drain()
    hit = await cache.get("get_weather", {"city": "Paris"})
    assert hit is not None and (hit.session_id, hit.user_id) == (sid, "erin")
    db = wrap_client(boto3_client)
    plan = await plan_purge(db, table, user_id="erin")
    assert plan.sessions == [sid] and len(plan.cache_refs) == 1
    await execute_purge(db, table, plan)
    assert SSN not in dump(scan(boto3_client, table))
    assert await cache.get("get_weather", {"city": "Paris"}) is None


async def test_purging_a_session_reads_only_its_partition_and_its_cache_entries(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str
) -> None:
    for n in range(5):  # other data that must not be read
        await DynamoDBSession(f"other-{n}", boto3_client, table, user_id="zed").add_items(
            tool_turn(n, f"City{n}"))
    sid, session = await _erin(boto3_client, table)
    await session.add_items(tool_turn(1, "Paris"))
    make_pump(endpoint, table).drain()
    counter = RequestCounter(boto3_client)
    db = wrap_client(boto3_client)
    plan = await plan_purge(db, table, session_id=sid)
    assert dict(counter.counts) == {"Query": 1}
    assert len(plan.keys) == 5 and len(plan.cache_refs) == 1  # 2 events, meta, snapshot, ref
    counter.reset()
    await execute_purge(db, table, plan)
    # tombstones + deletes in one batch, the cache entry (conditional), one check query
    assert dict(counter.counts) == {"BatchWriteItem": 1, "DeleteItem": 1, "Query": 1}


async def test_purging_a_user_finds_unprojected_sessions_without_a_scan(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str
) -> None:
    for n in range(5):
        await DynamoDBSession(f"other-{n}", boto3_client, table, user_id="zed").add_items(
            [{"role": "user", "content": "hi"}])
    projected, _ = await _erin(boto3_client, table)
    make_pump(endpoint, table).drain()
    fresh, _ = await _erin(boto3_client, table)  # the projector has not seen it yet
    counter = RequestCounter(boto3_client)
    plan = await plan_purge(wrap_client(boto3_client), table, user_id="erin")
    assert plan.sessions == sorted([projected, fresh])
    assert counter.counts["Scan"] == 0
    assert dict(counter.counts) == {"Query": 3}  # the index, then each partition


def test_a_full_scan_needs_its_flag_and_runs_in_parallel_segments(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    sid, _ = asyncio.run(_erin(boto3_client, table))
    counters = count_cli_clients(monkeypatch)
    result = cli(capsys, endpoint, table, "purge", "--user", "erin", "--scan", "--segments",
                 "4", "--yes")
    assert result.code == 0, result.err
    assert sid in result.out
    assert counters[0].counts["Scan"] == 4
    assert "scanned" in result.err  # the progress bar


def _shared(client: Any, table: str) -> str:
    sid = f"shared-{uuid.uuid4().hex[:6]}"

    async def go() -> None:
        alice = DynamoDBSession(sid, client, table, user_id="alice")
        bob = DynamoDBSession(sid, client, table, user_id="bob")
        await alice.add_items([{"role": "user", "content": "alice here"}])
        await bob.add_items([{"role": "user", "content": "bob here"}])
        await bob.add_items([{"role": "user", "content": "bob again"}])

    asyncio.run(go())
    return sid


def test_the_confirmation_lists_other_users_items_and_asks_what_to_do(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    sid = _shared(boto3_client, table)
    before = scan(boto3_client, table)
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    asked = cli(capsys, endpoint, table, "purge", "--user", "alice")
    assert "bob: 2 events" in asked.out and sid in asked.out
    assert asked.code == 1 and "nothing deleted" in asked.out
    assert len(scan(boto3_client, table)) == len(before)
    blind = cli(capsys, endpoint, table, "purge", "--user", "alice", "--yes")
    assert blind.code == 2 and "--shared" in blind.err
    whole = cli(capsys, endpoint, table, "purge", "--user", "alice", "--shared", "session",
                "--yes")
    assert whole.code == 0, whole.err
    assert not [i for i in scan(boto3_client, table)
                if key_of(i)[0] == f"SESSION#{sid}" and "purged" not in i]


async def test_a_purge_racing_a_writer_ends_purged_or_intact(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str
) -> None:
    sid, session = await _erin(boto3_client, table)
    for n in range(30):
        await session.add_items([{"role": "user", "content": f"turn {n}"}])
    db = wrap_client(boto3_client)
    plan = await plan_purge(db, table, session_id=sid)
    writer = DynamoDBSession(sid, endpoint.client("dynamodb"), table, user_id="erin")
    await writer.get_items()  # the writer knows the head before the purge starts

    async def write() -> None:
        for n in range(10):
            await writer.add_items([{"role": "user", "content": f"late {n}"}])

    await asyncio.gather(execute_purge(db, table, plan), write())
    report = await verify_session(EventLog(boto3_client, table), sid)
    assert report.ok, report.problem


async def test_erasing_only_one_users_content_keeps_the_chain_verifiable(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sid = f"team-{uuid.uuid4().hex[:6]}"
    alice = DynamoDBSession(sid, boto3_client, table, user_id="alice")
    bob = DynamoDBSession(sid, boto3_client, table, user_id="bob")
    await alice.add_items([{"role": "user", "content": f"alice's SSN is {SSN}"},
                           {"role": "assistant", "content": f"noted: {SSN}"}])
    await bob.add_items([{"role": "user", "content": "bob: hello"}])
    await bob.add_items([{"role": "user", "content": "bob: typo"}])
    assert await bob.pop_item() == {"role": "user", "content": "bob: typo"}
    await alice.add_items(tool_turn(1, "Paris"))
    pump = make_pump(endpoint, table)
    pump.drain()
    result = await asyncio.to_thread(cli, capsys, endpoint, table, "purge", "--user", "alice",
                                     "--shared", "content", "--yes")
    assert result.code == 0, result.err
    assert "erased the content of 'alice' in 1 sessions" in result.out
    pump.drain()
    make_pump(endpoint, table).drain()  # the whole stream again, images with the content
    assert SSN not in dump(scan(boto3_client, table))
    assert "sunny in Paris" not in dump(scan(boto3_client, table))
    report = await verify_session(EventLog(boto3_client, table), sid)
    assert report.ok and report.events == 5, report.problem
    erased = {"role": "user", "content": "[erased]"}
    assert await DynamoDBSession(sid, boto3_client, table).get_items() == [
        erased, {"role": "assistant", "content": "[erased]"},
        {"role": "user", "content": "bob: hello"},
        erased, {"role": "assistant", "content": "[erased]"},
        {"role": "assistant", "content": "[erased]"}, {"role": "assistant", "content": "[erased]"},
    ]
    assert (await list_sessions(boto3_client, table, "alice")).sessions == []
    assert [s.session_id for s in (await list_sessions(boto3_client, table, "bob")).sessions] == [
        sid]
    again = await asyncio.to_thread(cli, capsys, endpoint, table, "purge", "--user", "alice",
                                    "--yes")
    assert again.code == 1 and "nothing to purge" in again.out


async def test_erasing_content_kept_in_s3_deletes_its_object(
    boto3_client: Any, table: str, s3_client: Any, bucket: str
) -> None:
    from test_payload_store import objects
    from test_session_size_ttl import noise

    from convlog.erase_content import erase_user_content
    from eventstore.errors import PayloadStoreRequiredError
    from eventstore.payloads import PayloadStore

    sid = f"team-s3-{uuid.uuid4().hex[:6]}"
    store = dict(s3_client=s3_client, bucket_name=bucket)
    big = {"role": "user", "content": f"my SSN is {SSN} " + noise(600_000, seed=5)}
    await DynamoDBSession(sid, boto3_client, table, user_id="alice", **store).add_items([big])
    bob = {"role": "user", "content": "bob here"}
    await DynamoDBSession(sid, boto3_client, table, user_id="bob", **store).add_items([bob])
    assert len(objects(s3_client, bucket, sid)) == 1  # alice's event lives in S3
    before = dump(scan(boto3_client, table))
    db = wrap_client(boto3_client)
    with pytest.raises(PayloadStoreRequiredError):  # refused before any write
        await erase_user_content(db, table, sid, "alice")
    assert dump(scan(boto3_client, table)) == before
    payloads = PayloadStore(s3_client, bucket)
    erased = await erase_user_content(db, table, sid, "alice", payloads=payloads)
    assert erased.events == 1 and erased.through == 1
    assert objects(s3_client, bucket, sid) == []  # the content is gone from S3 too
    head = next(i for i in scan(boto3_client, table) if key_of(i) == (f"SESSION#{sid}",
                                                                       "EVENT#000000000001"))
    assert "obj" not in head and "payload" not in head
    report = await verify_session(EventLog(boto3_client, table, payloads=payloads), sid)
    assert report.ok and report.events == 2, report.problem
    assert await DynamoDBSession(sid, boto3_client, table, **store).get_items() == [
        {"role": "user", "content": "[erased]"}, bob]
