"""``convlog``: the command line for running and auditing convlog sessions.

Verbs: ``demo``, ``serve``, ``replay``, ``verify``, ``anchor``, ``import``,
``sessions``, ``rebuild``, ``purge``, ``sweep``, ``usage``. Every verb takes ``--table``,
``--endpoint-url``, ``--region`` and ``--bucket`` (also read from ``CONVLOG_TABLE``,
``CONVLOG_BUCKET`` and the standard AWS variables), works
against AWS, LocalStack or the embedded endpoint alike, and reports a failure as one line
on stderr.

Exit codes: 0 success; 1 ``verify`` found a broken chain (or a verb found nothing to
act on); 2 usage error or storage error (missing table, endpoint down, credentials
refused); 130 interrupted.

Example:
    ```python
    from convlog.cli import main

    exit_code = main(["verify", "user-123", "--endpoint-url", "http://127.0.0.1:4566"])
    ```
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO, TypeVar
from urllib.parse import urlparse

from eventstore.errors import ConvlogError, InvalidInputError, StorageError
from eventstore.log import EventLog
from eventstore.payloads import PayloadStore

from .cli_parser import DEFAULT_TABLE, build_parser, parse

if TYPE_CHECKING:
    from rich.console import Console

T = TypeVar("T")
EXIT_OK, EXIT_FAILED, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL")
_LOOPBACK = {"127.0.0.1", "localhost", "::1", "localhost.localstack.cloud"}


@dataclass
class CliContext:
    """Parsed arguments, output streams and a lazily built boto3 client for one verb."""

    args: argparse.Namespace
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    _client: Any = None
    _console: Any = None

    @property
    def table(self) -> str:
        """The table name (``--table``, ``CONVLOG_TABLE``, or ``agent_sessions``)."""
        value: str = self.args.table or os.environ.get("CONVLOG_TABLE") or DEFAULT_TABLE
        return value

    @property
    def endpoint_source(self) -> tuple[str, str] | None:
        """Where the endpoint comes from and its value, unchecked (or ``None``: AWS)."""
        if self.args.endpoint_url:
            return "--endpoint-url", str(self.args.endpoint_url)
        for name in ENDPOINT_VARIABLES:
            if os.environ.get(name):
                return name, os.environ[name]
        return None

    @property
    def endpoint_url(self) -> str | None:
        """``--endpoint-url``, ``AWS_ENDPOINT_URL_DYNAMODB`` or ``AWS_ENDPOINT_URL``.

        Raises:
            InvalidInputError: The URL has no ``http://`` or ``https://`` scheme.
        """
        source = self.endpoint_source
        if source is None:
            return None
        name, value = source
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            rest = value.split("://", 1)[-1]
            raise InvalidInputError(
                f"{name} {value!r} is not an http:// or https:// URL (e.g. http://{rest})"
            )
        return value

    def client(self, service: str = "dynamodb") -> Any:
        """A boto3 client for the chosen endpoint, region and credentials."""
        if service == "dynamodb" and self._client is not None:
            return self._client
        client = make_client(service, self.endpoint_url, self.args.region)
        if service == "dynamodb":
            self._client = client
        return client

    @property
    def bucket(self) -> str | None:
        """The payload bucket (``--bucket`` or ``CONVLOG_BUCKET``), ``None`` if neither."""
        value = getattr(self.args, "bucket", None) or os.environ.get("CONVLOG_BUCKET")
        return value or None

    def payloads(self) -> PayloadStore | None:
        """The payload store of ``bucket`` (``None`` without a bucket)."""
        bucket = self.bucket
        return PayloadStore(self.client("s3"), bucket) if bucket else None

    def event_log(self) -> EventLog:
        """The event log, reading large payloads from the payload bucket when one is set."""
        return EventLog(self.client(), self.table, payloads=self.payloads())

    @property
    def console(self) -> Console:
        """A rich console on stdout: colour on a terminal, plain text when piped."""
        if self._console is None:
            from .cli_format import console_for

            self._console = console_for(self.out)
        console: Console = self._console
        return console

    def print(self, *parts: object) -> None:
        """Write a line to stdout."""
        print(*parts, file=self.out)

    def warn(self, text: str) -> None:
        """Write a line to stderr."""
        print(text, file=self.err)


def make_client(service: str, endpoint_url: str | None, region: str | None) -> Any:
    """Build a boto3 client with short timeouts and botocore's standard retry mode.

    A loopback endpoint (embedded, LocalStack) gets region ``us-east-1`` and dummy
    credentials when none are configured.

    Raises:
        StorageError: No region is configured.
    """
    import boto3
    from botocore.config import Config

    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    local = bool(endpoint_url) and urlparse(endpoint_url).hostname in _LOOPBACK
    kwargs: dict[str, Any] = {}
    if local:
        region = region or "us-east-1"
        if boto3.Session().get_credentials() is None:
            kwargs.update(aws_access_key_id="testing", aws_secret_access_key="testing")
    if not region:
        raise StorageError("no AWS region configured: pass --region or set AWS_REGION")
    config = Config(
        connect_timeout=3, read_timeout=30, retries={"mode": "standard", "max_attempts": 3}
    )
    return boto3.client(  # type: ignore[call-overload]
        service, endpoint_url=endpoint_url, region_name=region, config=config, **kwargs
    )


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a fresh event loop.

    Inside a running loop (``main`` called from async code, e.g. a notebook) the
    coroutine runs on a fresh loop in a worker thread.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="convlog-cli") as pool:
        return pool.submit(asyncio.run, coro).result()


def load_projector(
    spec: str, client: Any, table: str, **options: Any
) -> Callable[[dict[str, Any], Any], Any]:
    """Build the stream handler from the factory named ``module:function``.

    The factory is called as ``factory(client, table)`` (plus those of ``options``,
    e.g. ``s3_client`` and ``bucket_name``, that it accepts) and returns a Lambda-style
    handler ``handler(event, context)``. The CLI is the composition root:
    ``eventstore`` never imports ``stream_handlers``; the factory is looked up by name
    at run time, as Lambda looks up its handler.

    Raises:
        InvalidInputError: The module or function cannot be loaded.
    """
    module_name, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr or "build_handler")
    except (ImportError, AttributeError) as exc:
        raise InvalidInputError(f"cannot load projector {spec!r}: {exc}") from exc
    accepted = inspect.signature(factory).parameters
    extra = {k: v for k, v in options.items() if k in accepted}
    handler: Callable[[dict[str, Any], Any], Any] = factory(client, table, **extra)
    return handler


def main(argv: list[str] | None = None) -> int:
    """Run ``convlog`` with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    parser = build_parser()
    try:
        args = parse(parser, argv)
    except SystemExit as exc:  # --help, --version or a usage error
        return int(exc.code or 0)
    ctx = CliContext(args)
    if importlib.util.find_spec("rich") is None:
        extra = "local" if args.verb in ("demo", "serve") else "cli"
        ctx.warn(f"convlog {args.verb}: error: the convlog command line needs rich: "
                 f"pip install 'convlog[{extra}]'")
        return EXIT_ERROR
    module_name, _, function = str(args.target).partition(":")
    try:
        command: Callable[[CliContext], int] = getattr(
            importlib.import_module(module_name), function
        )
        return command(ctx)
    except ConvlogError as exc:
        ctx.warn(f"convlog {args.verb}: error: {_one_line(exc)}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        ctx.warn(f"convlog {args.verb}: interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:
        from botocore.exceptions import BotoCoreError, ClientError

        if not isinstance(exc, BotoCoreError | ClientError):
            raise
        from eventstore.client import translate_error

        source = ctx.endpoint_source
        error = translate_error(exc, args.verb, source[1] if source else "AWS")
        ctx.warn(f"convlog {args.verb}: error: {_one_line(error)}")
        return EXIT_ERROR


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
