"""``convlog``: the command line for running and auditing convlog sessions.

Verbs: ``demo``, ``serve``, ``replay``, ``verify``, ``import``, ``sessions``,
``rebuild``, ``purge``, ``usage``. Every verb takes ``--table``, ``--endpoint-url`` and
``--region`` (also read from ``CONVLOG_TABLE`` and the standard AWS variables), works
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

if TYPE_CHECKING:
    from rich.console import Console

T = TypeVar("T")
DEFAULT_TABLE = "agent_sessions"
DEFAULT_PROJECTOR = "stream_handlers.projector:build_handler"
EXIT_OK, EXIT_FAILED, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
_PROJECTOR_HELP = "projector factory module:function, called with (client, table)"
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

    def event_log(self) -> EventLog:
        """The event log, reading large payloads from ``CONVLOG_BUCKET`` when it is set."""
        bucket = os.environ.get("CONVLOG_BUCKET") or None
        payloads = PayloadStore(self.client("s3"), bucket) if bucket else None
        return EventLog(self.client(), self.table, payloads=payloads)

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


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection")
    group.add_argument(
        "--table", help=f"table name (env CONVLOG_TABLE, default {DEFAULT_TABLE})"
    )
    group.add_argument(
        "--endpoint-url",
        help="DynamoDB endpoint (env AWS_ENDPOINT_URL_DYNAMODB or AWS_ENDPOINT_URL)",
    )
    group.add_argument("--region", help="AWS region (env AWS_REGION or AWS_DEFAULT_REGION)")
    return common


_VERBS: list[tuple[str, str, str, str]] = [
    ("demo", "convlog.cli_local:run_demo",
     "run a scripted agent conversation and show what convlog stored",
     "convlog demo\n  convlog demo --model gpt-4.1-mini      (needs OPENAI_API_KEY)"),
    ("serve", "convlog.cli_local:run_serve",
     "embedded DynamoDB endpoint + table + stream pump for local development",
     "convlog serve --port 4566 --console-port 8686\n"
     "  export AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:4566"),
    ("replay", "convlog.cli_log:run_replay",
     "every event of a session and the items at a point in its history",
     "convlog replay user-123 --at-seq 4\n  convlog replay user-123 --as-of 2026-01-31T12:00:00Z"
     "\n  convlog replay user-123 --format jsonl > user-123.jsonl"),
    ("verify", "convlog.cli_log:run_verify",
     "check the hash chain and seq sequence of sessions (exit 1 if broken)",
     "convlog verify user-123\n  convlog verify --all --deep"),
    ("anchor", "convlog.cli_anchor:run_anchor",
     "sign and store a digest of every session head changed since the last one",
     "convlog anchor --digest-bucket my-digests --signing-key alias/convlog-anchor"),
    ("import", "convlog.cli_log:run_import",
     "write the events of a 'replay --format jsonl' export back into a table",
     "convlog import user-123.jsonl --table agent_sessions_restored"),
    ("sessions", "convlog.cli_log:run_sessions",
     "a user's sessions, newest first, paged",
     "convlog sessions --user alice --limit 20\n  convlog sessions --user alice --cursor <next>"),
    ("rebuild", "convlog.cli_log:run_rebuild",
     "recompute snapshot, meta and tool-cache views from the log",
     "convlog rebuild user-123\n  convlog rebuild --all"),
    ("purge", "convlog.cli_log:run_purge",
     "erase every item of a session or of all sessions of a user, for good",
     "convlog purge --session user-123\n  convlog purge --user alice --yes\n"
     "  convlog purge --user alice --shared content --yes\n"
     "  convlog purge --user alice --scan --segments 8"),
    ("usage", "convlog.cli_usage:run_usage",
     "a user's token usage (store_run_usage), per session and in total",
     "convlog usage --user alice\n  convlog usage --user alice --since 2026-01-01T00:00:00Z"),
]


def _add_verb_arguments(name: str, sub: argparse.ArgumentParser) -> None:
    if name == "demo":
        sub.add_argument("--model", help="a real OpenAI model (needs OPENAI_API_KEY)")
        sub.add_argument("--projector", default=DEFAULT_PROJECTOR, help=_PROJECTOR_HELP)
    elif name == "serve":
        sub.add_argument("--port", type=int, default=4566, help="port (default 4566)")
        sub.add_argument("--projector", default=DEFAULT_PROJECTOR, help=_PROJECTOR_HELP)
        sub.add_argument("--no-projector", action="store_true", help="run no stream pump")
        sub.add_argument("--console-port", type=int, default=8686,
                         help="port of the audit console (default 8686)")
        sub.add_argument("--no-console", action="store_true", help="serve no audit console")
        sub.add_argument("--console-admin", action="store_true",
                         help="let the console purge (it is read-only by default)")
    elif name == "replay":
        sub.add_argument("session_id")
        point = sub.add_mutually_exclusive_group()
        point.add_argument("--at-seq", type=int, metavar="N", help="state after event N")
        point.add_argument("--as-of", metavar="TIME", help="state at an ISO 8601 time")
        sub.add_argument("--format", choices=("table", "json", "jsonl"), default="table")
    elif name == "verify":
        target = sub.add_mutually_exclusive_group(required=True)
        target.add_argument("session_id", nargs="?")
        target.add_argument("--all", action="store_true", help="every session in the table")
        sub.add_argument("--deep", action="store_true",
                         help="also fold the log and compare it with SNAPSHOT and META")
        _digest_arguments(sub)
    elif name == "anchor":
        _digest_arguments(sub)
    elif name == "import":
        sub.add_argument("file", help="a jsonl export ('-' for stdin)")
    elif name == "sessions":
        sub.add_argument("--user", required=True, metavar="USER_ID")
        sub.add_argument("--limit", type=int, default=20, help="sessions per page")
        sub.add_argument("--cursor", help="the 'next' cursor printed by the previous page")
        sub.add_argument("--format", choices=("table", "json"), default="table")
    elif name == "rebuild":
        target = sub.add_mutually_exclusive_group(required=True)
        target.add_argument("session_id", nargs="?")
        target.add_argument("--all", action="store_true", help="every session in the table")
        sub.add_argument("--projector", default=DEFAULT_PROJECTOR, help=_PROJECTOR_HELP)
        sub.add_argument(
            "--reset", action="store_true",
            help="delete the snapshot and meta first, recompute them from seq 1",
        )
    elif name == "usage":
        sub.add_argument("--user", required=True, metavar="USER_ID")
        sub.add_argument("--since", metavar="TIME", help="only usage recorded from then on")
        sub.add_argument("--format", choices=("table", "json"), default="table")
    elif name == "purge":
        target = sub.add_mutually_exclusive_group(required=True)
        target.add_argument("--session", metavar="SESSION_ID")
        target.add_argument("--user", metavar="USER_ID")
        sub.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        sub.add_argument(
            "--shared", choices=("session", "content"),
            help="sessions the user shares with others: 'session' deletes them whole, "
                 "other users' events included; 'content' erases only the user's content "
                 "and keeps the chain verifiable (required with --yes when there are any)",
        )
        sub.add_argument(
            "--scan", action="store_true",
            help="find the user's sessions with a parallel full-table Scan (reads the "
                 "whole table) instead of the by_user index",
        )
        sub.add_argument("--segments", type=int, default=4, metavar="N",
                         help="parallel Scan segments with --scan (default 4)")


def _digest_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--digest-bucket", help="S3 bucket of the signed digests "
                     "(env CONVLOG_DIGEST_BUCKET)")
    sub.add_argument("--signing-key", help="KMS key that signs the digests "
                     "(env CONVLOG_SIGNING_KEY)")


def build_parser() -> argparse.ArgumentParser:
    """The ``convlog`` argument parser (one sub-command per verb)."""
    parser = argparse.ArgumentParser(
        prog="convlog",
        description="Event-sourced OpenAI Agents SDK sessions in DynamoDB.",
        epilog="Run 'convlog VERB --help' for a verb's options and an example.",
    )
    parser.add_argument("--version", action="version", version=f"convlog {version()}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    common = _common()
    for name, target, summary, example in _VERBS:
        sub = verbs.add_parser(
            name, parents=[common], help=summary, description=summary[0].upper() + summary[1:],
            epilog=f"example:\n  {example}", formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_verb_arguments(name, sub)
        sub.set_defaults(target=target)
    return parser


def version() -> str:
    """The installed version of the ``convlog`` distribution."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("convlog")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "unknown (not installed)"


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv``; an unknown option is reported with the usage of its verb."""
    args, extras = parser.parse_known_args(argv)
    if extras:
        verbs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        verbs.choices[args.verb].error(f"unrecognized arguments: {' '.join(extras)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run ``convlog`` with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    parser = build_parser()
    try:
        args = _parse(parser, argv)
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
