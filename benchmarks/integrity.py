"""``python -m benchmarks.integrity``: what the integrity machinery costs, measured.

Two figures, both from request counts and allocations (never wall-clock):

* **anchor cost** -- one ``convlog anchor`` run over 1,000 active sessions on the
  embedded endpoint (moto serves DynamoDB, S3 with Object Lock and KMS): the requests
  it sends per service, counted at botocore's ``before-send``, and the digest size;
  scaled to one hour at the template's default schedule (every 5 minutes);
* **verify memory** -- the peak Python allocation (``tracemalloc``) of
  ``verify_session`` on sessions of 1,000 and 10,000 events: the chain is streamed, so
  the peak stays flat as the history grows. The endpoint runs in another process here,
  so that the figure is convlog's and botocore's, not moto's (moto copies a whole
  partition for every ``Query``).

Prints the figures; the README's Integrity section quotes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
import tracemalloc
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3

from convlog.anchor import DigestStore
from convlog.anchor_run import create_anchor_resources, write_digest
from convlog.audit import verify_session
from convlog.local import LOCAL_CREDENTIALS, LOCAL_REGION, EmbeddedEndpoint, free_port
from eventstore.events import GENESIS_HASH, ItemsAdded, chain_hash, now_iso
from eventstore.log import EventLog
from eventstore.records import encode_event
from eventstore.table import create_table_if_not_exists

RUNS_PER_HOUR = 12  # template.yaml AnchorSchedule default: rate(5 minutes)
ACTIVE_SESSIONS = 1_000


def seed(client: Any, table: str, session_id: str, events: int) -> None:
    """Write ``events`` one-message events exactly as ``add_items`` stores them."""
    prev, items = GENESIS_HASH, []
    for seq in range(1, events + 1):
        event = ItemsAdded(session_id=session_id, seq=seq, ts=now_iso(),
                           token=uuid.uuid4().hex,
                           items=[{"role": "user", "content": f"message {seq} " + "x" * 200}])
        digest = chain_hash(prev, event, None)
        items.extend(encode_event(event, prev, digest, ttl=None))
        prev = digest
    for start in range(0, len(items), 25):
        batch = [{"PutRequest": {"Item": i}} for i in items[start:start + 25]]
        while batch:
            left = client.batch_write_item(RequestItems={table: batch})
            batch = left.get("UnprocessedItems", {}).get(table, [])


def anchor_cost(endpoint: EmbeddedEndpoint) -> dict[str, Any]:
    client = endpoint.client("dynamodb")
    table = f"bench-anchor-{uuid.uuid4().hex[:6]}"
    asyncio.run(create_table_if_not_exists(client, table))
    s3, kms = endpoint.client("s3"), endpoint.client("kms")
    bucket = f"bench-digests-{uuid.uuid4().hex[:6]}"
    store = DigestStore(s3, kms, bucket, create_anchor_resources(s3, kms, bucket), table)
    log = EventLog(client, table)
    asyncio.run(write_digest(log, store))  # digest 1: the chain starts
    for n in range(ACTIVE_SESSIONS):
        seed(client, table, f"active-{n:04d}", 3)
    counts: Counter[str] = Counter()

    def counter(service: str) -> Any:
        def on_send(request: Any, **_: Any) -> None:
            target = request.headers.get("X-Amz-Target", b"")
            target = target.decode() if isinstance(target, bytes) else target
            counts[f"{service} {target.split('.')[-1] if target else request.method}"] += 1
        return on_send

    for service, c in (("s3", s3), ("kms", kms), ("dynamodb", client)):
        c.meta.events.register(f"before-send.{service}", counter(service))
    digest = asyncio.run(write_digest(log, store))
    return {"heads": len(digest.heads), "digest_bytes": len(digest.body()),
            "requests": dict(counts)}


def verify_peak(client: Any, events: int) -> int:
    """Peak Python allocation of ``verify_session`` on a session of ``events`` events."""
    table = f"bench-verify-{uuid.uuid4().hex[:6]}"
    asyncio.run(create_table_if_not_exists(client, table))
    seed(client, table, "long", events)
    log = EventLog(client, table)
    asyncio.run(verify_session(log, "long"))  # warm botocore's caches first
    tracemalloc.start()
    report = asyncio.run(verify_session(log, "long"))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert report.ok and report.events == events, report
    return peak


@contextlib.contextmanager
def endpoint_process() -> Iterator[Any]:
    """The embedded endpoint in a child process; yields a DynamoDB client for it."""
    port = free_port()
    code = ("import time; from convlog.local import EmbeddedEndpoint; "
            f"EmbeddedEndpoint({port}).start(); time.sleep(3600)")
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        client = boto3.client("dynamodb", endpoint_url=f"http://127.0.0.1:{port}",
                              region_name=LOCAL_REGION, **LOCAL_CREDENTIALS)
        for _ in range(100):
            try:
                client.list_tables()
                break
            except Exception:  # not listening yet
                time.sleep(0.1)
        yield client
    finally:
        child.terminate()
        child.wait(timeout=10)


def main() -> int:
    with EmbeddedEndpoint() as endpoint:
        cost = anchor_cost(endpoint)
        print(f"anchor run over {ACTIVE_SESSIONS:,} active sessions: {cost['heads']:,} heads, "
              f"digest {cost['digest_bytes']:,} bytes")
        for name, count in sorted(cost["requests"].items()):
            print(f"  {name:<16} {count:>3} per run  {count * RUNS_PER_HOUR:>4} per hour "
                  f"(every 5 minutes)")
    with endpoint_process() as client:
        for events in (1_000, 10_000):
            peak = verify_peak(client, events)
            print(f"verify_session, {events:>6,} events: peak Python allocation "
                  f"{peak / 1024:,.0f} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
