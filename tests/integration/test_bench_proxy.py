"""One HTTP proxy for the fault tests and the benchmarks (issue 14).

``benchmarks.proxy.HttpProxy`` is ``tests.faults.FaultProxy``; its delay rule stands in
for DynamoDB's network latency in the projector benchmark. Here the benchmark's
200-session interleaved stream runs through it (1 ms per request, to stay quick) and the
handler's requests per batch are asserted from what the proxy saw: request counts are
deterministic, wall time is not asserted.
"""

from __future__ import annotations

from typing import Any

import boto3
from faults import FaultProxy

from benchmarks.projector import run_delayed
from benchmarks.proxy import HttpProxy
from convlog.local import LOCAL_CREDENTIALS, LOCAL_REGION, EmbeddedEndpoint


def test_the_fault_proxy_is_the_benchmark_proxy() -> None:
    assert FaultProxy is HttpProxy


async def test_200_interleaved_sessions_cost_two_reads_and_two_writes_per_session_per_batch(
    endpoint: EmbeddedEndpoint,
) -> None:
    run = await run_delayed(endpoint, 200, 2, 0.001)
    assert run["delivered"] == 400 and run["batches"] == 4
    # each batch of 100 records holds 100 sessions, one event each: their views in two
    # BatchGetItem requests (200 keys), then one snapshot and one meta put per session
    assert run["operations"] == {"BatchGetItem": 8, "PutItem": 800}
    assert run["requests_per_batch"] == 202
    assert run["proxied"] == run["operations"]  # every request went through the delay


def test_delay_error_and_drop_rules_on_dynamodb_and_s3(endpoint: EmbeddedEndpoint) -> None:
    kwargs: dict[str, Any] = {"region_name": LOCAL_REGION, **LOCAL_CREDENTIALS}
    with HttpProxy(endpoint.url).delay(0.001) as proxy:
        db = boto3.client("dynamodb", endpoint_url=proxy.url, **kwargs)
        s3 = boto3.client("s3", endpoint_url=proxy.url, **kwargs)
        db.list_tables()
        s3.list_buckets()
        proxy.error("ListTables", "ThrottlingException", times=1)
        db.list_tables()  # botocore retries the throttled call
        assert proxy.seen["ListTables"] == 3 and proxy.seen["GET"] == 1
        assert [r.fired for r in proxy.rules] == [4, 1]
