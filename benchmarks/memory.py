"""Large payloads and peak memory (issue 13): ``python -m benchmarks.memory``.

Two measurements, on the embedded endpoint (moto's DynamoDB, Streams and S3, in this
process), each operation run in a fresh child process so that its peak RSS is its own:

* add and get of one item of 1, 10 and 100 MB of base64 text (poorly compressible, as
  files and images are), with a payload bucket and ``max_add_bytes`` raised to 128 MiB;
* peak RSS above the child's resident size before the call, of ``get_items(limit=10)``,
  ``get_items()``, ``verify``, ``replay`` (``--format jsonl``: streamed) and the projector
  (the stream pump feeding ``stream_handlers`` from ``TRIM_HORIZON``, batches of 100) on
  a session of N events of one ~150-byte item each.

Prints a Markdown table (the README's figures come from it).

Example:
    ```
    python -m benchmarks.memory --sizes 1,10,100 --events 10000,30000
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


def _run_child(op: str, url: str, table: str, session_id: str, arg: int = 0) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory", "--child", op, url, table, session_id,
         str(arg)], capture_output=True, text=True, check=True,
    )
    figures: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


# ---- parent: set up, run the children, print the tables ----------------------------------


def _history(client: Any, table: str, session_id: str, events: int) -> None:
    """Write ``events`` chained events straight to the table (25 per BatchWriteItem)."""
    rng, prev, batch = random.Random(events), GENESIS_HASH, []
    words = ["the", "agent", "asked", "tool", "returned", "forecast", "rain", "user",
             "wanted", "umbrella"]
    for seq in range(1, events + 1):
        text = " ".join(rng.choice(words) for _ in range(20))
        event = ItemsAdded(session_id=session_id, seq=seq, ts="2026-11-22T10:00:00.000Z",
                           token=f"t{seq}", items=[{"role": "user", "content": text}])
        psha = payload_digest(payload_data(event))
        digest = chain_hash(prev, event, None, payload_sha256=psha)
        batch += encode_event(event, prev, digest, ttl=None, payload_sha256=psha)
        prev = digest
        if len(batch) >= 25 or seq == events:
            client.batch_write_item(RequestItems={table: [{"PutRequest": {"Item": i}}
                                                          for i in batch]})
            batch = []


def main(argv: list[str] | None = None) -> int:
    """Run the measurements and print the Markdown tables."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "--child":
        op, url, table, session_id, arg = args[1:6]
        print(json.dumps(asyncio.run(_child(op, url, table, session_id, int(arg)))))
        return 0
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory")
    parser.add_argument("--sizes", default="1,10,100", help="item sizes in MB")
    parser.add_argument("--events", default="10000,30000", help="session lengths")
    opts = parser.parse_args(args)
    from convlog.local import EmbeddedEndpoint
    from eventstore import create_bucket_if_not_exists, create_table_if_not_exists

    with EmbeddedEndpoint() as endpoint:
        db, s3 = endpoint.client(), endpoint.client("s3")
        asyncio.run(create_bucket_if_not_exists(s3, BUCKET))
        print("| one item | add: s | add: peak RSS | get_items: s | get_items: peak RSS |")
        print("|---|---|---|---|---|")
        for mb in (int(v) for v in opts.sizes.split(",")):
            table = f"bench-{uuid.uuid4().hex[:8]}"
            asyncio.run(create_table_if_not_exists(db, table))
            add = _run_child("add", endpoint.url, table, "big", mb)
            get = _run_child("get", endpoint.url, table, "big", mb)
            print(f"| {mb} MB | {add['seconds']:.1f} | +{add['peak_mb']:.0f} MB | "
                  f"{get['seconds']:.1f} | +{get['peak_mb']:.0f} MB |", flush=True)
        print()
        ops = ["projector", "get10", "get", "verify", "replay"]
        print("| events | projector | get_items(limit=10) | get_items() | verify | "
              "replay --format jsonl |")
        print("|---|---|---|---|---|---|")
        for events in (int(v) for v in opts.events.split(",")):
            table = f"bench-{uuid.uuid4().hex[:8]}"
            asyncio.run(create_table_if_not_exists(db, table))
            _history(db, table, "long", events)
            cells = [f"+{_run_child(op, endpoint.url, table, 'long')['peak_mb']:.0f} MB"
                     for op in ops]
            print(f"| {events:,} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
