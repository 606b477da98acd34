"""``python -m benchmarks [--quick]``: measure, print the tables, rewrite BENCHMARKS.md."""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from convlog.local import EmbeddedEndpoint
from eventstore.log import FIRST_PAGE
from eventstore.reader import VIEW_ROWS

from . import report, scenarios, targets
from .memory import DEFAULT_EVENTS, DEFAULT_SIZES, measure_memory, memory_tables
from .projector import run_projector
from .readme import (
    HEADLINE_AT,
    MEMORY_END,
    MEMORY_START,
    memory_block,
    readme_section,
    replace_block,
    update_readme,
)
from .subjects import (
    PEER_PACKAGE,
    ConvlogSubject,
    PeerSubject,
    SqliteSubject,
    Subject,
    peer_version,
)
from .workload import MESSAGE_BYTES

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / "benchmarks" / "baseline_projector.json"
FULL_LENGTHS = [10, 100, 1_000, 5_000, 10_000]
QUICK_LENGTHS = [100, 1_000, 10_000]
LAG_BASE, LAGS = 1_000, [100, 1_000]  # a 1,000-item session, then 100 and 1,000 events


def _env() -> None:
    for name, value in (("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_ACCESS_KEY_ID", "testing"),
                        ("AWS_SECRET_ACCESS_KEY", "testing"), ("OPENAI_API_KEY", "sk-unused"),
                        ("OPENAI_AGENTS_DISABLE_TRACING", "1"),
                        ("POWERTOOLS_SERVICE_NAME", "convlog-bench"),
                        ("POWERTOOLS_LOG_LEVEL", "WARNING")):
        os.environ.setdefault(name, value)


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


STEPS = ("checkpoints", "lagging", "limits", "concurrency", "projector", "delayed",
         "memory")


async def measure_all(args: argparse.Namespace) -> scenarios.Results:
    """Run every scenario (or those of ``--only``) on one embedded endpoint."""
    from aiobotocore.session import get_session

    lengths = QUICK_LENGTHS if args.quick else FULL_LENGTHS
    results = scenarios.Results(lengths=lengths, reps=args.reps or (5 if args.quick else 10))
    steps = set(args.only or STEPS)
    with EmbeddedEndpoint() as endpoint, tempfile.TemporaryDirectory() as tmp:
        shadow = endpoint.client("dynamodb")
        aio = get_session()
        async with aio.create_client("dynamodb", **endpoint.client_kwargs()) as ours, \
                aio.create_client("dynamodb", **endpoint.client_kwargs()) as theirs:
            convlog = ConvlogSubject(endpoint, ours, shadow)
            subjects: list[Subject] = [convlog]
            if peer_version() is not None:
                subjects.append(PeerSubject(theirs, shadow))
            else:
                results.notes.append(
                    f"The peer package `{PEER_PACKAGE}` is not installed: its rows are missing "
                    "(pip install -r benchmarks/requirements.txt)."
                )
            subjects.append(SqliteSubject(Path(tmp)))
            for subject in subjects:
                await subject.setup()
                results.labels[subject.key] = subject.label
            results.labels["convlog-noproj"] = "convlog, projector off (no snapshot)"
            if convlog.projector_error:
                results.notes.append(convlog.projector_error)
            if "checkpoints" in steps:
                _step("history checkpoints")
                await scenarios.checkpoints(results, subjects)
            if "lagging" in steps and convlog.pump is not None:
                _step("reads behind a lagging projector")
                await scenarios.lagging(results, convlog, LAG_BASE, LAGS)
            if "limits" in steps:
                _step("largest session")
                await scenarios.limits(results, subjects)
            if "concurrency" in steps:
                _step("concurrency")
                for subject in subjects:
                    await scenarios.concurrency(results, subject)
            for subject in subjects:
                await subject.close()
        if "projector" in steps:
            _step("projector")
            events = 3_000 if args.quick else 10_000
            results.projector = await run_projector(endpoint, events, args.projector_sessions)
        if "delayed" in steps:
            _step("projector at 5 ms per request")
            results.delayed = await targets.delayed_projector(endpoint)
        results.baseline = targets.load_baseline(BASELINE)
        if "memory" in steps:
            results.memory = await asyncio.to_thread(
                measure_memory, endpoint.url, endpoint.client(), endpoint.client("s3"),
                DEFAULT_SIZES[:2] if args.quick else DEFAULT_SIZES,
                DEFAULT_EVENTS[:1] if args.quick else DEFAULT_EVENTS, step=_step)
    return results


def _partial(results: scenarios.Results, steps: set[str]) -> str:
    """The tables of an ``--only`` run's steps."""
    parts = []
    if "delayed" in steps:
        parts += [targets.delayed_table(results), targets.baseline_note(results)]
    if "projector" in steps:
        parts += [report.projector_table(results), report.projector_note(results)]
    if "memory" in steps and results.memory:
        parts.append(memory_tables(results.memory))
    if steps & {"checkpoints", "lagging", "limits", "concurrency"}:
        parts.append(f"(tables of {', '.join(sorted(steps))} need the full run)")
    return "\n\n".join(parts)


def _step(name: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {name} ...", file=sys.stderr, flush=True)


def render(results: scenarios.Results, args: argparse.Namespace, seconds: float) -> str:
    """The whole BENCHMARKS.md."""
    at = HEADLINE_AT if HEADLINE_AT in results.lengths else max(results.lengths)
    mode = "--quick" if args.quick else "full"
    parts = [
        "# Benchmarks",
        "",
        "Generated by `python -m benchmarks` "
        f"({mode} run, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, measured in {seconds:.0f} s). "
        "Do not edit by hand: the command rewrites this file.",
        "",
        "**All figures were measured in one process run on the embedded endpoint** "
        "(moto's DynamoDB server on 127.0.0.1, one request at a time), against the real "
        f"`{PEER_PACKAGE}` {_version(PEER_PACKAGE)} single-item `DynamoDBSession` and the "
        f"OpenAI Agents SDK {_version('openai-agents')} `SQLiteSession`. Requests and bytes are "
        "counted by botocore event hooks on each implementation's own client (`before-send`: "
        "HTTP requests and request bodies; `before-parse`: response bodies), which send "
        "nothing. Each figure comes from one *counted* call (requests, bytes, capacity) "
        "followed by *timed* calls that are bare: they send exactly the requests the "
        "operation sends (\"requests per timed call\" shows it beside each latency; "
        "`tests/integration/test_bench_meter.py` proves it through a counting proxy). "
        "Capacity units are computed, after the counted call, from the sizes of the items "
        "each request wrote or read, with "
        "DynamoDB's rounding rules (`eventstore/capacity.py`: 1 WCU per started KB of the "
        "larger of old and new item, x2 in a transaction; 1 RCU per started 4 KB summed "
        "over a Query page, half for eventually consistent reads), so they are deterministic "
        "and are what AWS would bill. Latencies are medians of up to "
        f"{results.reps} timed calls ({max(results.reps, scenarios.ADD_REPS)} for "
        f"`add_items`; fewer once {scenarios.TIME_BUDGET_SECONDS:g} s are "
        "spent, at least one; \"(1 call)\" marks a single timed call) on the "
        f"machine that generated this file ({os.cpu_count()} CPUs, shared with other work), "
        "through moto, whose per-request overhead (several ms) dominates: compare them "
        "between rows, not with AWS. "
        "Two caveats favour the single-item design in the latency columns: moto sorts every "
        "item of a table on each `Query` (so convlog's `Query`-based reads slow down with "
        "the table, which DynamoDB's do not), and serialises each returned item field by "
        "field (convlog returns many small items, the single-item design one big string). "
        "In the capacity columns, the single-item package reads with an eventually "
        "consistent `GetItem` (its default; half the RCU of a strongly consistent read), "
        "while convlog reads strongly consistent, so a session sees its own writes.",
        "",
        f"Workload: one turn = 2 items (a user and an assistant message of {MESSAGE_BYTES} "
        "bytes of JSON each). Each implementation grows one session turn by turn through "
        "the history lengths (the single-item and SQLite sessions are grown with one "
        "`add_items` call per step, which stores exactly what turn-by-turn calls store); "
        "at each length the reads are measured first, then `add_items` (its first call at "
        "exactly that length is the counted call, the timed calls follow). "
        "convlog's reads are measured after the stream pump has run the projector "
        "(fresh snapshot) and, on a copy of the same events in a table without a "
        "projector, with no snapshot at all.",
        "",
        "## Targets",
        "",
        targets.targets_table(results),
        "",
        "Wall-clock figures in this file are measured on the embedded endpoint: moto's "
        "`Query` walks (and sorts) the whole table on every call, so there a `Query` costs "
        "far more than a `GetItem` of the same bytes, unlike DynamoDB. Judge the read path "
        "by round trips, capacity, bytes and convlog's own CPU (measured on canned "
        "responses, no I/O); the latencies are reported as measured.",
        "",
        "## Summary",
        "",
        report.headline(results, at),
        "",
        "![capacity units against history length](benchmarks/cost_vs_history.png)",
        "",
        "## add_items (one turn)",
        "",
        report.add_table(results),
        "",
        report.cold_note(results),
        "",
        "## get_items()",
        "",
        report.read_table(results, results.get_all),
        "",
        "convlog sends one newest-first `Query` of "
        f"{FIRST_PAGE + VIEW_ROWS} rows (for `get_items(limit=N)`, N + 10 if that is "
        "fewer): the snapshot's sealed chunks (`get_items()` only), its head, the meta "
        "item, then the newest events; a read behind a fresh snapshot also pays for the "
        "few newest events that share that page, which it does not need. A snapshot of "
        "more chunks than the page holds (about 1,000 items and up) stops it among its "
        "chunks: the rest of them and the newest events are then read at once, two round "
        "trips and three requests.",
        "",
        "## get_items(limit=20)",
        "",
        report.read_table(results, results.get_20),
        "",
        "## Reads behind a lagging projector",
        "",
        targets.lagging_table(results),
        "",
        f"A convlog session of {LAG_BASE:,} items, projected, then grown by "
        f"{' and then to '.join(f'{lag:,}' for lag in LAGS)} one-turn events the projector "
        "has not seen (its snapshot lags that far). After the first page (snapshot, meta, "
        "the newest events) the events from the snapshot's seq -- the event at that seq "
        "proves the snapshot -- up to the page are read in one round of concurrent range "
        "queries, each under 1 MB. \"Round trips\" counts requests sent while no other "
        "was pending; \"events read older than the snapshot\" counts event items below "
        "the snapshot's seq that the counted call received. Own CPU: the same read "
        "replayed from its recorded responses (`benchmarks/cpu.py`), median thread CPU.",
        "",
        "## Largest session",
        "",
        report.limits_table(results),
        "",
        "The single-item design stores the whole history in one item, which DynamoDB caps at "
        "400 KB; the search fills a session with "
        f"{scenarios.LIMIT_SEARCH_START:,} items, then adds turns until a write "
        f"fails. convlog and SQLite were not pushed further than {max(results.lengths):,} "
        "items: neither has a per-session cap (convlog stores one item per event). "
        "moto counts item sizes its own way and refuses items above 405,000 bytes; by "
        "DynamoDB's documented rules (400 KB = 409,600 bytes, `eventstore.capacity."
        "item_size`) the same single item would overflow at "
        f"{scenarios.single_item_limit_on_aws():,} items on AWS (computed, not measured).",
        "",
        "## Concurrency: 8 writers x 50 items on one session id",
        "",
        report.concurrency_table(results),
        "",
        "Each writer has its own session object (as separate workers would) and adds its 50 "
        "items one call at a time; all eight run at once. Stored items are counted by "
        "distinct content afterwards. \"Lost silently\" = written, not stored, and no error "
        "raised to the writer.",
        "",
        "## Projector at 5 ms per request (many users)",
        "",
        targets.delayed_table(results),
        "",
        f"{targets.DELAYED_EVENTS:,} `items_added` events interleaved over 1, 4 and 200 "
        "sessions; the handler's client talks to the endpoint through a proxy on "
        "127.0.0.1 that adds 5 ms to every request (`benchmarks/proxy.py`, DynamoDB's "
        "network latency) and serves requests concurrently; events/s counts time inside "
        "the handler. " + targets.baseline_note(results),
        "",
        "## Projector",
        "",
        report.projector_table(results),
        "",
        report.projector_note(results),
        "",
        "## Large payloads and peak memory (issue 13)",
        "",
        memory_tables(results.memory) if results.memory else "(not measured in this run)",
        "",
        "Each figure comes from a fresh child process (`benchmarks/memory.py`): the peak RSS "
        "above its resident size just before the call. Top: `add_items` and `get_items()` "
        "of one item of base64 text (poorly compressible) with a payload bucket and "
        "`max_add_bytes` raised to 128 MiB. Bottom: a session of N events (one ~150-byte "
        "item each, written with `BatchWriteItem` as `add_items` writes them). The "
        "projector figure is the stream pump feeding `stream_handlers.projector` the "
        "session's last 1,000 events in batches of 100, after the same handler brought "
        "its views to the event before them (in the parent, 10,000 records a call): the "
        "peak of projecting a long session batch by batch, without the pump buffering "
        "the whole stream. An operation still running after "
        f"{(results.memory or {}).get('timeout') or 0:.0f} s is stopped and reported so.",
        "",
        "## Environment",
        "",
        f"Python {platform.python_version()} on {platform.system()} {platform.machine()}; "
        f"moto {_version('moto')}, botocore {_version('botocore')}, "
        f"aiobotocore {_version('aiobotocore')}, openai-agents {_version('openai-agents')}, "
        f"{PEER_PACKAGE} {_version(PEER_PACKAGE)}.",
    ]
    if results.notes:
        parts += ["", "## Notes", ""] + [f"- {note}" for note in results.notes]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="lengths 10-1,000, 5 timed calls, 1,000-event projector stream")
    parser.add_argument("--reps", type=int, default=0, help="timed calls per figure")
    parser.add_argument("--projector-sessions", type=int, default=1,
                        help="sessions the projector's stream is interleaved over")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--chart", type=Path, default=ROOT / "benchmarks" / "cost_vs_history.png")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md",
                        help="README whose benchmarks section receives the summary")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--only", action="append", choices=STEPS, metavar="STEP",
                        help=f"run only this step (repeatable; one of {', '.join(STEPS)}); "
                             "figures of the others are missing, so use it with --no-write")
    parser.add_argument("--projector-baseline", type=Path, metavar="JSON",
                        help="measure only the projector at 5 ms per request; write JSON")
    args = parser.parse_args(argv)
    _env()
    if args.projector_baseline:
        return targets.write_baseline(args.projector_baseline)
    start = time.perf_counter()
    results = asyncio.run(measure_all(args))
    if args.only:  # a partial run: print what it measured, write nothing
        print(_partial(results, set(args.only)))
        print(f"measured in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        return 0
    text = render(results, args, time.perf_counter() - start)
    print(text)
    if not args.no_write:
        args.output.write_text(text, encoding="utf-8")
        report.chart(results, args.chart)
        if args.readme.exists():
            update_readme(args.readme, readme_section(results, args))
            if results.memory:
                when = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
                replace_block(args.readme, MEMORY_START, MEMORY_END, memory_block(
                    results.memory, "--quick" if args.quick else "full", when))
        print(f"wrote {args.output}, {args.chart} and the README section", file=sys.stderr)
    return 0
