"""``convlog serve``, and the embedded endpoint and stream pump that ``demo`` shares.

``serve`` keeps the embedded endpoint (DynamoDB, Streams, S3, KMS), the table, the
payload bucket, the stream pump and the audit console running for an agent app under
development, and prints the exports that point the app at them.

Example:
    ```python
    from convlog.cli import main

    main(["serve", "--port", "4566"])
    ```
"""

from __future__ import annotations

import errno
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from eventstore.errors import InvalidInputError, OptionalDependencyError
from eventstore.payloads import create_bucket_if_not_exists
from eventstore.table import create_table_if_not_exists

from .cli import EXIT_OK, CliContext, load_projector, run_async
from .cli_anchor import local_anchor_resources
from .local import LOCAL_BUCKET, LOCAL_CREDENTIALS, LOCAL_REGION, EmbeddedEndpoint, local_client
from .pump import StreamPump

Handler = Callable[[dict[str, Any], Any], Any]
MAX_PORT = 65535


def embedded_only(ctx: CliContext) -> None:
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


class ProjectorPump:
    """The stream pump (``convlog.pump``) feeding the projector, or nothing.

    Example:
        ```python
        pump = ProjectorPump(client, "agent_sessions", handler, streams)
        pump.drain()  # no-op when the projector could not be loaded (handler None)
        ```
    """

    def __init__(self, client: Any, table: str, handler: Handler | None, streams: Any) -> None:
        self.pump: StreamPump | None = None
        if handler is not None:
            self.pump = StreamPump(handler, table, dynamodb=client, streams=streams)

    @property
    def running(self) -> bool:
        """Whether a projector is attached."""
        return self.pump is not None

    def start(self) -> None:
        """Poll in the background (``convlog serve``)."""
        if self.pump is not None:
            self.pump.start()

    def drain(self) -> None:
        """Deliver everything in the stream now."""
        if self.pump is not None:
            self.pump.drain()

    def stop(self) -> None:
        """Stop the background poller."""
        if self.pump is not None:
            self.pump.stop()


def projector_or_none(
    ctx: CliContext, spec: str, client: Any, **options: Any
) -> Handler | None:
    """The projector named by ``spec``, or ``None`` (with a warning) if it cannot load."""
    try:
        return load_projector(spec, client, ctx.table, **options)
    except InvalidInputError as exc:
        ctx.warn(f"convlog {ctx.args.verb}: projections off ({exc})")
        return None


@contextmanager
def local_endpoint(
    ctx: CliContext, port: int | None = None
) -> Iterator[tuple[Any, Any, str, bool]]:
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


def run_serve(ctx: CliContext) -> int:
    """``convlog serve [--port 4566] [--console-port 8686]``: run until SIGINT or SIGTERM."""
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    embedded_only(ctx)
    _check_port(ctx.args.port)
    stop = threading.Event()
    previous = _install_stop_handlers(stop)
    try:
        with local_endpoint(ctx, ctx.args.port) as (client, streams, url, _):
            run_async(create_table_if_not_exists(client, ctx.table))
            s3 = local_client(url, "s3")  # large payloads (eventstore.payloads)
            run_async(create_bucket_if_not_exists(s3, LOCAL_BUCKET))
            handler = None if ctx.args.no_projector else projector_or_none(
                ctx, ctx.args.projector, client, s3_client=s3, bucket_name=LOCAL_BUCKET)
            console = _console(ctx, client, s3)
            pump = ProjectorPump(client, ctx.table, _logging(ctx, handler), streams)
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
            ctx.print(f"  export AWS_ENDPOINT_URL_S3={url} AWS_ENDPOINT_URL_KMS={url} "
                      f"AWS_ENDPOINT_URL_STS={url}")  # STS: who signs a purge record
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


