"""Large payloads and peak memory (issue 13): ``python -m benchmarks.memory``.

Two measurements, on the embedded endpoint (moto's DynamoDB, Streams and S3, in this
process), each operation run in a fresh child process so that its peak RSS is its own:

* add and get of one item of 1, 10 and 100 MB of base64 text (poorly compressible, as
  files and images are), with a payload bucket and ``max_add_bytes`` raised to 128 MiB;
* peak RSS above the child's resident size before the call, of ``get_items(limit=10)``,
  ``get_items()``, ``verify``, ``replay`` (``--format jsonl``: streamed) and the projector
  on a session of N events of one ~150-byte item each. The projector child is the
  stream pump feeding ``stream_handlers`` the session's last ``STREAM_TAIL`` events in
  batches of 100, its views brought to the event before them by the same handler
  (``_history``): the peak of projecting a long session, batch by batch.

Prints a Markdown table (the README's figures come from it).

Example:
    ```
    python -m benchmarks.memory --sizes 1,10,100 --events 10000,100000
    ```
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from eventstore.events import GENESIS_HASH, ItemsAdded, chain_hash, payload_data, payload_digest
from eventstore.records import encode_event

BUCKET = "convlog-bench-payloads"
MIB = 1024 * 1024


def _status_kb(field: str) -> int:
    """``VmRSS`` or ``VmHWM`` (peak RSS of this process image) from /proc, in KB.

    Not ``ru_maxrss``: Linux carries it over from the parent through fork and exec, so
    a child of a large parent would report the parent's peak.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> None:
    """Reset ``VmHWM`` to the current RSS (Linux >= 4.0), so the peak is the call's."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def _noise(size: int, seed: int) -> str:
    raw = random.Random(seed).randbytes(size * 3 // 4 + 3)
    return base64.b64encode(raw).decode()[:size]


# ---- child: one operation, its wall time and its peak RSS above the starting RSS ----------


async def _child(op: str, url: str, table: str, session_id: str, arg: int) -> dict[str, Any]:
    from convlog.audit import iter_replay, verify_session
    from convlog.local import local_client
    from convlog.pump import StreamPump
    from eventstore import DynamoDBSession
    from eventstore.log import EventLog
    from eventstore.payloads import PayloadStore
    from stream_handlers.projector import build_handler

    db, s3 = local_client(url), local_client(url, "s3")
    session = DynamoDBSession(session_id, db, table, s3_client=s3, bucket_name=BUCKET,
                              max_add_bytes=128 * MIB)
    log = EventLog(db, table, payloads=PayloadStore(s3, BUCKET), max_payload_bytes=128 * MIB)
    item: Any = {"role": "tool", "content": _noise(arg * 1_000_000, arg)} if op == "add" else None
    _reset_peak()
    before, started = _status_kb("VmRSS"), time.perf_counter()
    result: Any = None
    if op == "add":
        await session.add_items([item])
    elif op == "get":
        result = len(await session.get_items())
    elif op == "get10":
        result = len(await session.get_items(limit=10))
    elif op == "verify":
        result = (await verify_session(log, session_id)).events
    elif op == "replay":
        with open("/dev/null", "w") as sink:
            count = 0
            async for stored in iter_replay(log, session_id):
                sink.write(json.dumps(stored.event.model_dump(mode="json")) + "\n")
                count += 1
        result = count
    elif op == "projector":
        handler = build_handler(db, table, s3_client=s3, bucket_name=BUCKET)
        result = await asyncio.to_thread(
            StreamPump(handler, table, dynamodb=db,
                       streams=local_client(url, "dynamodbstreams")).drain)
    seconds = time.perf_counter() - started
    peak = _status_kb("VmHWM")
    return {"op": op, "seconds": seconds, "peak_mb": max(0, peak - before) / 1024,
            "result": result}


def _run_child(
    op: str, url: str, table: str, session_id: str, arg: int = 0, timeout: float | None = None
) -> dict[str, Any]:
    """Run one operation in a fresh process; ``{"timeout": s}`` if it did not finish."""
    try:
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.memory", "--child", op, url, table, session_id,
             str(arg)], capture_output=True, text=True, check=True, timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"op": op, "timeout": timeout}
    figures: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


# ---- parent: set up, run the children, print the tables ----------------------------------


STREAM_TAIL = 1_000
"""Events the measured projector child receives through the stream (10 batches)."""
PRIMING_BATCH = 10_000


def _history(client: Any, s3: Any, table: str, session_id: str, events: int) -> None:
    """A session of ``events`` chained events whose views stand at ``events - STREAM_TAIL``.

    The table starts without a stream. The first ``events - STREAM_TAIL`` events are
    written with ``BatchWriteItem`` (25 a request) and run through the projector's own
    handler in this process, ``PRIMING_BATCH`` records a call, as Lambda-shaped records,
    so the session's views are the ones the projector writes; then the stream is
    enabled and the last ``STREAM_TAIL`` events are written. The measured projector
    child thus projects batches of a session of ``events`` events, not the whole
    stream from its start (whose records the pump would buffer).
    """
    from convlog.lambda_events import lambda_record
    from eventstore.table import STREAM_SPECIFICATION, table_definition
    from stream_handlers.projector import build_handler

    definition = table_definition(table)
    definition.pop("StreamSpecification")
    client.create_table(**definition)
    handler = build_handler(client, table, s3_client=s3, bucket_name=BUCKET)
    primed = max(0, events - STREAM_TAIL)
    rng, prev, batch, records = random.Random(events), GENESIS_HASH, [], []
    words = ["the", "agent", "asked", "tool", "returned", "forecast", "rain", "user",
             "wanted", "umbrella"]
    arn = f"arn:aws:dynamodb:us-east-1:123456789012:table/{table}/stream/priming"
    for seq in range(1, events + 1):
        text = " ".join(rng.choice(words) for _ in range(20))
        event = ItemsAdded(session_id=session_id, seq=seq, ts="2026-11-22T10:00:00.000Z",
                           token=f"t{seq}", items=[{"role": "user", "content": text}])
        psha = payload_digest(payload_data(event))
        digest = chain_hash(prev, event, None, payload_sha256=psha)
        items = encode_event(event, prev, digest, ttl=None, payload_sha256=psha)
        batch += items
        prev = digest
        if seq <= primed:
            records.append(lambda_record({
                "eventID": f"e{seq}", "eventName": "INSERT", "eventVersion": "1.1",
                "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
                "dynamodb": {"Keys": {"pk": items[0]["pk"], "sk": items[0]["sk"]},
                             "NewImage": items[0], "SequenceNumber": str(10**20 + seq),
                             "SizeBytes": 100, "StreamViewType": "NEW_AND_OLD_IMAGES"},
            }, arn))
        if len(batch) >= 25 or seq in (primed, events):
            client.batch_write_item(RequestItems={table: [{"PutRequest": {"Item": i}}
                                                          for i in batch]})
            batch = []
        if records and (len(records) == PRIMING_BATCH or seq == primed):
            failed = handler({"Records": records}, None)["batchItemFailures"]
            if failed:
                raise RuntimeError(f"priming the views failed at {failed[0]}")
            records = []
        if seq == primed:
            client.update_table(TableName=table, StreamSpecification=dict(STREAM_SPECIFICATION))


EVENT_OPS = ["projector", "get10", "get", "verify", "replay"]
DEFAULT_SIZES, DEFAULT_EVENTS = [1, 10, 100], [10_000, 100_000]
CHILD_TIMEOUT_SECONDS = 900.0


def measure_memory(
    url: str, db: Any, s3: Any, sizes: list[int], events: list[int],
    timeout: float | None = CHILD_TIMEOUT_SECONDS, step: Any = None,
) -> dict[str, Any]:
    """Every figure of both tables, each from its own child process.

    Args:
        url: The embedded endpoint (the children connect to it).
        db: A DynamoDB client of that endpoint (setup: tables, histories).
        s3: An S3 client of that endpoint.
        sizes: Item sizes in MB (add and get of one item each).
        events: Session lengths (peak RSS of each operation in ``EVENT_OPS``).
        timeout: A child still running after this many seconds is stopped and reported.
        step: Called with a short description before each group (progress).
    """
    from eventstore import create_bucket_if_not_exists, create_table_if_not_exists

    asyncio.run(create_bucket_if_not_exists(s3, BUCKET))
    data: dict[str, Any] = {"sizes": [], "events": [], "timeout": timeout}
    for mb in sizes:
        if step:
            step(f"memory: add and get of one {mb} MB item")
        table = f"bench-{uuid.uuid4().hex[:8]}"
        asyncio.run(create_table_if_not_exists(db, table))
        add = _run_child("add", url, table, "big", mb, timeout)
        get = _run_child("get", url, table, "big", mb, timeout)
        data["sizes"].append({"mb": mb, "add": add, "get": get})
    for count in events:
        if step:
            step(f"memory: {count:,} events (write, then {', '.join(EVENT_OPS)})")
        table = f"bench-{uuid.uuid4().hex[:8]}"
        started = time.perf_counter()
        _history(db, s3, table, "long", count)
        written = time.perf_counter() - started
        # the projector first, alone (it writes the views the reads then read); the
        # reads two at a time: each child is its own process, so its peak is its own
        ops = {"projector": _run_child("projector", url, table, "long", 0, timeout)}
        with ThreadPoolExecutor(2) as pool:
            runs = {op: pool.submit(_run_child, op, url, table, "long", 0, timeout)
                    for op in EVENT_OPS if op != "projector"}
            ops.update({op: run.result() for op, run in runs.items()})
        data["events"].append({"events": count, "write_seconds": written, "ops": ops})
    return data


def _cell(figure: dict[str, Any], what: str) -> str:
    if "timeout" in figure:
        return f"not done in {figure['timeout']:.0f} s"
    return f"{figure['seconds']:.1f}" if what == "s" else f"+{figure['peak_mb']:.0f} MB"


def memory_tables(data: dict[str, Any]) -> str:
    """The two Markdown tables of ``measure_memory``'s figures."""
    lines = ["| one item | add: s | add: peak RSS | get_items: s | get_items: peak RSS |",
             "|---|---|---|---|---|"]
    for row in data["sizes"]:
        lines.append(f"| {row['mb']} MB | {_cell(row['add'], 's')} | "
                     f"{_cell(row['add'], 'rss')} | {_cell(row['get'], 's')} | "
                     f"{_cell(row['get'], 'rss')} |")
    lines += ["", f"| events (one ~150-byte item each) | projector (its last {STREAM_TAIL:,}, "
              "batches of 100) | get_items(limit=10) | get_items() | verify | "
              "replay --format jsonl |",
              "|---|---|---|---|---|---|"]
    for row in data["events"]:
        cells = [_cell(row["ops"][op], "rss") for op in EVENT_OPS]
        lines.append(f"| {row['events']:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the measurements and print the Markdown tables."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "--child":
        op, url, table, session_id, arg = args[1:6]
        print(json.dumps(asyncio.run(_child(op, url, table, session_id, int(arg)))))
        return 0
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory")
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)),
                        help="item sizes in MB")
    parser.add_argument("--events", default=",".join(map(str, DEFAULT_EVENTS)),
                        help="session lengths")
    parser.add_argument("--timeout", type=float, default=CHILD_TIMEOUT_SECONDS,
                        help="seconds one measured operation may take")
    opts = parser.parse_args(args)
    from convlog.local import EmbeddedEndpoint

    with EmbeddedEndpoint() as endpoint:
        data = measure_memory(
            endpoint.url, endpoint.client(), endpoint.client("s3"),
            [int(v) for v in opts.sizes.split(",") if v],
            [int(v) for v in opts.events.split(",") if v], opts.timeout,
            step=lambda text: print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr,
                                    flush=True),
        )
    print(memory_tables(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
