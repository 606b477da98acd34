"""``convlog demo``: a scripted agent conversation, then what convlog stored.

It prints the events, the snapshot, the tool-cache hit, the user's sessions, a replay at
an earlier point and the verification of the hash chain; on its own embedded endpoint
unless ``--endpoint-url`` is given (the endpoint helpers live in ``convlog.cli_local``).

Example:
    ```python
    from convlog.cli import main

    main(["demo"])
    ```
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from typing import Any

from eventstore.client import wrap_client
from eventstore.errors import InvalidInputError
from eventstore.fold import Snapshot
from eventstore.keys import tool_pk
from eventstore.log import EventLog
from eventstore.table import create_table_if_not_exists
from eventstore.views import ToolCacheEntry, decode_tool_entry, read_views

from .audit import replay, verify_session
from .cli import EXIT_FAILED, EXIT_OK, CliContext, run_async
from .cli_audit import describe_report, render_replay
from .cli_format import render_items, shorten
from .cli_local import ProjectorPump, embedded_only, local_endpoint, projector_or_none
from .cli_log import render_sessions
from .demo import TENANT, TOOL_NAME, DemoResult, run_conversation


def _ignored_exports(ctx: CliContext) -> None:
    """Say that the demo does not write where the shell's exports point."""
    source = None if ctx.args.endpoint_url else ctx.endpoint_source
    if source is not None:
        name, url = source
        ctx.warn(f"convlog demo: {name}={url} is ignored; the demo runs on its own embedded "
                 f"endpoint (pass --endpoint-url {url} to write into that one)")


def run_demo(ctx: CliContext) -> int:
    """``convlog demo [--model NAME]``."""
    model = ctx.args.model
    if model and not os.environ.get("OPENAI_API_KEY"):
        raise InvalidInputError("--model needs OPENAI_API_KEY in the environment")
    embedded_only(ctx)
    _ignored_exports(ctx)
    started = time.monotonic()
    with local_endpoint(ctx) as (client, streams, url, embedded):
        where = "embedded DynamoDB endpoint" if embedded else "endpoint"
        ctx.print(f"convlog demo: {where} {url}, table {ctx.table}")
        run_async(create_table_if_not_exists(client, ctx.table))
        handler = projector_or_none(ctx, ctx.args.projector, client) if embedded else None
        pump = ProjectorPump(client, ctx.table, handler, streams)
        try:
            result = _converse(ctx, client, pump, model, embedded)
            pump.drain()
            if not embedded:
                _await_projection(client, ctx.table, result.main_session)
            ok = _report(ctx, client, result, projected=pump.running or not embedded)
        finally:
            pump.stop()
    ctx.print(f"\ndemo finished in {time.monotonic() - started:.1f}s")
    return EXIT_OK if ok else EXIT_FAILED


def _converse(
    ctx: CliContext, client: Any, pump: ProjectorPump, model: str | None, embedded: bool
) -> DemoResult:
    _section(ctx, "conversation (Runner.run with DynamoDBSession, "
             + (f"model {model})" if model else "scripted model, no API key)"))
    tenant = TENANT if embedded else f"{TENANT}-{uuid.uuid4().hex[:6]}"
    wrap = _tool_cache_wrapper(client, ctx.table, tenant)

    def on_turn(session_id: str, text: str, output: str) -> None:
        ctx.print(f"[{session_id}] user : {shorten(text, 60)}")
        ctx.print(f"{' ' * (len(session_id) + 2)} agent: {shorten(output, 60)}")

    async def after_turn() -> None:
        pump.drain()

    return run_async(
        run_conversation(client, ctx.table, model_name=model, wrap_tool=wrap,
                         on_turn=on_turn, after_turn=after_turn, tenant=tenant)
    )


def _tool_cache_wrapper(client: Any, table: str, tenant: str) -> Any:
    from eventstore.toolcache import ToolCache, cached_tool

    return cached_tool(ToolCache(client, table, scope=tenant))  # the tenant's scope only


def _snapshot(client: Any, table: str, session_id: str) -> Snapshot | None:
    return run_async(read_views(wrap_client(client), table, session_id)).snapshot


def _tool_entries(
    client: Any, table: str, tool_name: str, scope: str
) -> list[ToolCacheEntry]:
    response = wrap_client(client).call_sync(
        "query", TableName=table, KeyConditionExpression="pk = :pk AND begins_with(sk, :a)",
        ExpressionAttributeValues={":pk": {"S": tool_pk(tool_name, scope)},
                                   ":a": {"S": "ARGS#"}}, ConsistentRead=True,
    )
    return [decode_tool_entry(item) for item in response.get("Items", [])]


def _call_ids(replayed: Any) -> list[str]:
    return [str(i.get("call_id")) for s in replayed.events for i in getattr(s.event, "items", [])
            if i.get("type") == "function_call"]


def _names(call_ids: list[str]) -> str:
    return ", ".join(call_ids) or "no call"


def _decoded(value: Any) -> str:
    """A stored tool output, with one level of JSON text unwrapped for reading."""
    with contextlib.suppress(ValueError):
        value = json.loads(value) if isinstance(value, str) else value
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _section(ctx: CliContext, title: str) -> None:
    ctx.print(f"\n== {title} ==")


def _await_projection(client: Any, table: str, session_id: str, timeout: float = 15) -> None:
    """On an outside endpoint another projector (Lambda, ``convlog serve``) writes the views."""
    head = run_async(EventLog(client, table).read_head(session_id)).seq
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snapshot = _snapshot(client, table, session_id)
        if snapshot is not None and snapshot.seq >= head:
            return
        time.sleep(0.5)


def _branch_and_usage(
    ctx: CliContext, client: Any, result: DemoResult, *, projected: bool
) -> None:
    from eventstore.session import DynamoDBSession

    from .cli_usage import render_usage, user_usage

    session = DynamoDBSession(result.main_session, client, ctx.table)
    _section(ctx, f"branches of {result.main_session} (list_branches)")
    for branch in run_async(session.list_branches()):
        ctx.print(f"  {branch['branch_id']}: {branch['message_count']} items, "
                  f"{branch['user_turns']} user turns, created {branch['created_at']}")
    ctx.print(f"  {result.branch} starts before turn 2 (its first event points at the main "
              "session's seq and hash; nothing copied) and continues:")
    ctx.print(render_items(result.branch_items))
    _section(ctx, f"usage of user {result.user} (store_run_usage, summed by the projector)")
    ctx.print(render_usage(run_async(user_usage(client, ctx.table, result.user)), result.user)
              if projected else "  (no session index: projections are off)")


def _report(ctx: CliContext, client: Any, result: DemoResult, *, projected: bool) -> bool:
    log = EventLog(client, ctx.table)
    session_id = result.main_session

    _section(ctx, f"events of {session_id}")
    now = run_async(replay(log, session_id))
    ctx.print(render_replay(now, None, None, ctx.console))

    _section(ctx, "snapshot (written by the projector from the stream)")
    snapshot = _snapshot(client, ctx.table, session_id) if projected else None
    if snapshot is None:
        ctx.print("  (no snapshot: projections are off, or no projector runs on this endpoint)")
    else:
        ctx.print(f"  SESSION#{session_id} / SNAPSHOT: seq {snapshot.seq}, "
                  f"{len(snapshot.entries)} items")
        ctx.print(render_items([e.item for e in snapshot.entries]))

    _section(ctx, f"tool cache (scope {result.tenant}: the tenant of these sessions)")
    calls = sum(1 for s in now.events for i in getattr(s.event, "items", [])
                if i.get("type") == "function_call")
    ran = result.tool_runs
    served = [c for c in _call_ids(now) if c not in result.tool_runs]
    ctx.print(f"  the agent called {TOOL_NAME} {calls} times with the same arguments: "
              f"{_names(ran)} ran the function; {_names(served)} "
              f"{'was' if len(served) == 1 else 'were'} served from the cache")
    for entry in _tool_entries(client, ctx.table, TOOL_NAME, result.tenant):
        ctx.print(f"  {entry.key['pk']['S']} / ARGS#{entry.arguments_hash[:16]}…: output "
                  f"{shorten(_decoded(entry.output), 56)}")
        origin = "" if entry.call_id in result.tool_runs else ", a cache hit"
        ctx.print(f"    last written from session {entry.session_id} call {entry.call_id}"
                  f"{origin}; created {entry.created}, hits {entry.hits}")

    _section(ctx, f"sessions of user {result.user}")
    ctx.print(render_sessions(client, ctx.table, result.user, console=ctx.console) if projected
              else "  (no session index: projections are off)")

    _branch_and_usage(ctx, client, result, projected=projected)

    _section(ctx, f"replay of {session_id} at seq {result.checkpoint_seq} (after turn 1)")
    earlier = run_async(replay(log, session_id, at_seq=result.checkpoint_seq))
    ctx.print(f"  items then ({len(earlier.items)}):")
    ctx.print(render_items(earlier.items))
    same = earlier.items == result.checkpoint_items
    ctx.print(f"  equal to what get_items returned after turn 1: {'yes' if same else 'NO'}")

    _section(ctx, "verify")
    ok = same
    for sid in result.sessions:
        report = run_async(verify_session(log, sid))
        ctx.print(describe_report(report))
        ok = ok and report.ok
    return ok
