"""The ``convlog`` argument parser: one sub-command per verb, with help and an example.

Each verb names the ``module:function`` that runs it, imported only when the verb runs
(``demo`` and ``serve`` need the ``local`` extra, the others only ``cli``).

Example:
    ```python
    from convlog.cli_parser import build_parser

    args = build_parser().parse_args(["sweep", "--bucket", "b", "--dry-run"])
    ```
"""

from __future__ import annotations

import argparse

from eventstore.payloads import SWEEP_MIN_AGE_SECONDS

DEFAULT_TABLE = "agent_sessions"
DEFAULT_PROJECTOR = "stream_handlers.projector:build_handler"
_PROJECTOR_HELP = "projector factory module:function, called with (client, table)"


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
    group.add_argument("--bucket", help="payload bucket of large events and snapshots "
                       "(env CONVLOG_BUCKET)")
    return common


_VERBS: list[tuple[str, str, str, str]] = [
    ("demo", "convlog.cli_demo:run_demo",
     "run a scripted agent conversation and show what convlog stored",
     "convlog demo\n  convlog demo --model gpt-4.1-mini      (needs OPENAI_API_KEY)"),
    ("serve", "convlog.cli_local:run_serve",
     "embedded DynamoDB endpoint + table + stream pump for local development",
     "convlog serve --port 4566 --console-port 8686\n"
     "  export AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:4566"),
    ("replay", "convlog.cli_audit:run_replay",
     "every event of a session and the items at a point in its history",
     "convlog replay user-123 --at-seq 4\n  convlog replay user-123 --as-of 2026-01-31T12:00:00Z"
     "\n  convlog replay user-123 --format jsonl > user-123.jsonl"),
    ("verify", "convlog.cli_audit:run_verify",
     "check the hash chain and seq sequence of sessions (exit 1 if broken)",
     "convlog verify user-123\n  convlog verify --all --deep"),
    ("anchor", "convlog.cli_anchor:run_anchor",
     "sign and store a digest of every session head changed since the last one",
     "convlog anchor --digest-bucket my-digests --signing-key alias/convlog-anchor"),
    ("import", "convlog.cli_audit:run_import",
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
    ("sweep", "convlog.cli_log:run_sweep",
     "delete payload objects that no live item points to (lost commits, expired items)",
     "convlog sweep --bucket my-convlog-payloads --dry-run\n"
     "  convlog sweep --bucket my-convlog-payloads --min-age 86400"),
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
    elif name == "sweep":
        sub.add_argument("--dry-run", action="store_true",
                         help="list the orphans, delete nothing")
        sub.add_argument("--min-age", type=int, default=SWEEP_MIN_AGE_SECONDS, metavar="SECONDS",
                         help="keep younger objects: a commit may still be in flight "
                              f"(default {SWEEP_MIN_AGE_SECONDS})")
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


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv``; an unknown option is reported with the usage of its verb."""
    args, extras = parser.parse_known_args(argv)
    if extras:
        verbs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        verbs.choices[args.verb].error(f"unrecognized arguments: {' '.join(extras)}")
    return args
