"""``convlog demo`` and ``convlog serve``: convlog on the embedded endpoint.

``demo`` runs a scripted agent conversation and prints what convlog stored: the events,
the snapshot, the tool-cache hit, the user's sessions, a replay at an earlier point and
the verification of the hash chain. ``serve`` keeps the embedded endpoint, the table and
the stream pump running for an agent app under development.

Example:
    ```python
    from convlog.cli import main

    main(["demo"])
    ```
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from eventstore.client import wrap_client
from eventstore.errors import InvalidInputError, OptionalDependencyError
from eventstore.fold import Snapshot
from eventstore.keys import tool_pk
from eventstore.log import EventLog
from eventstore.payloads import create_bucket_if_not_exists
from eventstore.table import create_table_if_not_exists
from eventstore.views import ToolCacheEntry, decode_tool_entry, read_views

from .audit import replay, verify_session
from .cli import EXIT_FAILED, EXIT_OK, CliContext, load_projector, run_async
from .cli_anchor import local_anchor_resources
from .cli_audit import describe_report, render_replay
from .cli_format import render_items, shorten
from .cli_log import render_sessions
from .demo import TOOL_NAME, DemoResult, run_conversation
from .local import LOCAL_BUCKET, LOCAL_CREDENTIALS, LOCAL_REGION, EmbeddedEndpoint, local_client
from .pump import StreamPump

Handler = Callable[[dict[str, Any], Any], Any]
MAX_PORT = 65535


def _embedded_only(ctx: CliContext) -> None:
    """Reject the connection options that the embedded endpoint cannot honour.

    ``serve`` is the endpoint: it listens on 127.0.0.1 and answers in ``us-east-1``
    (moto's region), so ``--endpoint-url`` and ``--region`` would be ignored; the demo
    runs on its own endpoint unless ``--endpoint-url`` is given, and only then takes
    ``--region``.

    Raises:
        InvalidInputError: ``--endpoint-url`` (serve) or ``--region`` was given.
    """
    if ctx.args.verb == "serve" and ctx.args.endpoint_url:
        raise InvalidInputError(
            "--endpoint-url does not apply: serve starts its own endpoint on 127.0.0.1 "
            "(choose its port with --port)"
        )
    if ctx.args.region and not (ctx.args.verb == "demo" and ctx.args.endpoint_url):
        raise InvalidInputError(
            f"--region does not apply: the embedded endpoint answers in {LOCAL_REGION} only"
        )


def _ignored_exports(ctx: CliContext) -> None:
    """Say that the demo does not write where the shell's exports point."""
    source = None if ctx.args.endpoint_url else ctx.endpoint_source
    if source is not None:
        name, url = source
        ctx.warn(f"convlog demo: {name}={url} is ignored; the demo runs on its own embedded "
                 f"endpoint (pass --endpoint-url {url} to write into that one)")


class _Pump:
    """The stream pump (``convlog.pump``) feeding the projector, or nothing."""

    def __init__(self, client: Any, table: str, handler: Handler | None, streams: Any) -> None:
        self.pump: StreamPump | None = None
        if handler is not None:
            self.pump = StreamPump(handler, table, dynamodb=client, streams=streams)

    @property
    def running(self) -> bool:
        return self.pump is not None

    def start(self) -> None:
        if self.pump is not None:
            self.pump.start()

    def drain(self) -> None:
        if self.pump is not None:
            self.pump.drain()

    def stop(self) -> None:
        if self.pump is not None:
            self.pump.stop()


def _projector(ctx: CliContext, spec: str, client: Any, **options: Any) -> Handler | None:
    try:
        return load_projector(spec, client, ctx.table, **options)
    except InvalidInputError as exc:
        ctx.warn(f"convlog {ctx.args.verb}: projections off ({exc})")
        return None


@contextmanager
def _endpoint(ctx: CliContext, port: int | None = None) -> Iterator[tuple[Any, Any, str, bool]]:
    """Yield (dynamodb client, streams client, url, embedded?) for the chosen endpoint."""
    if ctx.args.verb == "demo" and ctx.args.endpoint_url:
        yield ctx.client(), ctx.client("dynamodbstreams"), str(ctx.endpoint_url), False
        return
    if port is not None:
        _check_port(port)
    endpoint = EmbeddedEndpoint(port).start()
    try:
        yield (endpoint.client("dynamodb"), endpoint.client("dynamodbstreams"), endpoint.url,
               True)
    finally:
        endpoint.stop()


def _check_port(port: int) -> None:
    """Fail with one line when the port cannot be bound (werkzeug would exit the process)."""
    if not 0 <= port <= MAX_PORT:
        raise InvalidInputError(f"--port must be between 0 and {MAX_PORT}, got {port}")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as werkzeug does
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            why = f"port {port} is in use" if exc.errno == errno.EADDRINUSE else str(exc)
            raise InvalidInputError(f"cannot listen on 127.0.0.1:{port}: {why}") from exc


def run_demo(ctx: CliContext) -> int:
    """``convlog demo [--model NAME]``."""
    model = ctx.args.model
    if model and not os.environ.get("OPENAI_API_KEY"):
        raise InvalidInputError("--model needs OPENAI_API_KEY in the environment")
    _embedded_only(ctx)
    _ignored_exports(ctx)
    started = time.monotonic()
    with _endpoint(ctx) as (client, streams, url, embedded):
        where = "embedded DynamoDB endpoint" if embedded else "endpoint"
        ctx.print(f"convlog demo: {where} {url}, table {ctx.table}")
        run_async(create_table_if_not_exists(client, ctx.table))
        handler = _projector(ctx, ctx.args.projector, client) if embedded else None
        pump = _Pump(client, ctx.table, handler, streams)
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
    ctx: CliContext, client: Any, pump: _Pump, model: str | None, embedded: bool
) -> DemoResult:
    _section(ctx, "conversation (Runner.run with DynamoDBSession, "
             + (f"model {model})" if model else "scripted model, no API key)"))
    wrap = _tool_cache_wrapper(client, ctx.table)

    def on_turn(session_id: str, text: str, output: str) -> None:
        ctx.print(f"[{session_id}] user : {shorten(text, 60)}")
        ctx.print(f"{' ' * (len(session_id) + 2)} agent: {shorten(output, 60)}")

    async def after_turn() -> None:
        pump.drain()

    suffix = "" if embedded else "-" + uuid.uuid4().hex[:6]
    return run_async(
        run_conversation(client, ctx.table, model_name=model, wrap_tool=wrap,
                         on_turn=on_turn, after_turn=after_turn, suffix=suffix)
    )


def _tool_cache_wrapper(client: Any, table: str) -> Any:
    from eventstore.toolcache import ToolCache, cached_tool

    return cached_tool(ToolCache(client, table))


def _snapshot(client: Any, table: str, session_id: str) -> Snapshot | None:
    return run_async(read_views(wrap_client(client), table, session_id)).snapshot


def _tool_entries(client: Any, table: str, tool_name: str) -> list[ToolCacheEntry]:
    response = wrap_client(client).call_sync(
        "query", TableName=table, KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": tool_pk(tool_name)}}, ConsistentRead=True,
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

    _section(ctx, "tool cache")
    calls = sum(1 for s in now.events for i in getattr(s.event, "items", [])
                if i.get("type") == "function_call")
    ran = result.tool_runs
    served = [c for c in _call_ids(now) if c not in result.tool_runs]
    ctx.print(f"  the agent called {TOOL_NAME} {calls} times with the same arguments: "
              f"{_names(ran)} ran the function; {_names(served)} "
              f"{'was' if len(served) == 1 else 'were'} served from the cache")
    for entry in _tool_entries(client, ctx.table, TOOL_NAME):
        ctx.print(f"  TOOL#{entry.tool_name} / ARGS#{entry.arguments_hash[:16]}…: output "
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


def run_serve(ctx: CliContext) -> int:
    """``convlog serve [--port 4566] [--console-port 8686]``: run until SIGINT or SIGTERM."""
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _embedded_only(ctx)
    _check_port(ctx.args.port)
    stop = threading.Event()
    previous = _install_stop_handlers(stop)
    try:
        with _endpoint(ctx, ctx.args.port) as (client, streams, url, _):
            run_async(create_table_if_not_exists(client, ctx.table))
            s3 = local_client(url, "s3")  # large payloads (eventstore.payloads)
            run_async(create_bucket_if_not_exists(s3, LOCAL_BUCKET))
            handler = None if ctx.args.no_projector else _projector(
                ctx, ctx.args.projector, client, s3_client=s3, bucket_name=LOCAL_BUCKET)
            console = _console(ctx, client, s3)
            pump = _Pump(client, ctx.table, _logging(ctx, handler), streams)
            pump.start()
            ctx.print(f"convlog serve: DynamoDB endpoint {url} (table {ctx.table}, "
                      f"stream pump {'on' if pump.running else 'off'})")
            if console is not None:
                mode = "admin: purge allowed" if ctx.args.console_admin else "read-only"
                ctx.print(f"console: {console.url} (audit console, {mode})")
            ctx.print("export these in the shell of your agent app:")
            ctx.print(f"  export AWS_ENDPOINT_URL_DYNAMODB={url}")
            ctx.print(f"  export AWS_DEFAULT_REGION={LOCAL_REGION} "
                      f"AWS_ACCESS_KEY_ID={LOCAL_CREDENTIALS['aws_access_key_id']} "
                      f"AWS_SECRET_ACCESS_KEY={LOCAL_CREDENTIALS['aws_secret_access_key']}")
            ctx.print(f"  export CONVLOG_TABLE={ctx.table}")
            bucket, key_id = local_anchor_resources(url, ctx.table)
            ctx.print(f"  export AWS_ENDPOINT_URL_S3={url} AWS_ENDPOINT_URL_KMS={url}")
            ctx.print(f"  export CONVLOG_DIGEST_BUCKET={bucket} CONVLOG_SIGNING_KEY={key_id}")
            ctx.print(f"  export CONVLOG_BUCKET={LOCAL_BUCKET}  # large payloads (README)")
            ctx.print("press Ctrl-C to stop")
            ctx.out.flush()
            try:
                while not stop.wait(0.2):
                    pass
            except KeyboardInterrupt:
                pass
            ctx.print("convlog serve: stopping")
            pump.stop()
            if console is not None:
                console.stop()
    finally:
        _restore_handlers(previous)
    ctx.print("convlog serve: stopped")
    ctx.out.flush()
    return EXIT_OK


def _console(ctx: CliContext, client: Any, s3: Any) -> Any:
    """Start the audit console (``convlog.console``) on ``--console-port``, or nothing."""
    if ctx.args.no_console:
        return None
    from .console.server import check_installed, check_port

    check_port(ctx.args.console_port)
    try:
        check_installed()
    except OptionalDependencyError as exc:
        ctx.warn(f"convlog serve: console off ({exc})")
        return None
    from .console.app import create_app
    from .console.server import ConsoleServer

    app = create_app(client, ctx.table, admin=ctx.args.console_admin, s3_client=s3,
                     bucket_name=LOCAL_BUCKET)
    return ConsoleServer(app, ctx.args.console_port).start()


def _logging(ctx: CliContext, handler: Handler | None) -> Handler | None:
    if handler is None:
        return None

    def logged(event: dict[str, Any], context: Any) -> Any:
        response = handler(event, context)
        failed = {f.get("itemIdentifier") for f in (response or {}).get("batchItemFailures", [])}
        for record in event.get("Records", []):
            keys = record.get("dynamodb", {}).get("Keys", {})
            image = record.get("dynamodb", {}).get("NewImage", {})
            status = "FAILED" if record.get("dynamodb", {}).get("SequenceNumber") in failed \
                else "projected"
            ctx.print(f"{time.strftime('%H:%M:%S')} {status} {keys.get('pk', {}).get('S')} "
                      f"{keys.get('sk', {}).get('S')} {image.get('type', {}).get('S', '')}")
        ctx.out.flush()
        return response

    return logged


def _install_stop_handlers(stop: threading.Event) -> dict[int, Any]:
    previous: dict[int, Any] = {}
    if threading.current_thread() is not threading.main_thread():
        return previous
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, lambda *_: stop.set())
    return previous


def _restore_handlers(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


__all__ = ["run_demo", "run_serve"]
