"""Lambda entry point of the projector: DynamoDB stream batch in, views out.

Deployed as ``stream_handlers.projector.handler`` behind the event source mapping whose
settings live in ``eventstore.table`` (``STREAM_BATCH_SIZE``, ``STREAM_FILTER_PATTERN``,
...); the local ``convlog.pump.StreamPump`` calls the same handler. Environment:
``TABLE_NAME`` (required), ``TOOL_CACHE_TTL_SECONDS`` (default 3600, ``0`` = off),
``PAYLOAD_BUCKET`` (the S3 bucket of large payloads, if any), ``CONVLOG_MAX_ADD_BYTES``
(the cap readers inflate to), and the standard AWS variables (``AWS_ENDPOINT_URL``...).

Example:
    ```python
    from stream_handlers.projector import build_handler

    handler = build_handler(boto3.client("dynamodb"), "agent_sessions")
    response = handler({"Records": records}, None)  # {"batchItemFailures": [...]}
    ```
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)

from eventstore.client import DynamoClient, wrap_client
from eventstore.payloads import PayloadStore

from .batch import MAX_IN_FLIGHT, ProjectionBatch, in_flight_limit, run_sync

logger = Logger(service="convlog-projector")
metrics = Metrics(namespace="convlog", service="convlog-projector")
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
_client: Any = None
_s3: Any = None


def build_handler(
    client: Any, table_name: str, *, tool_ttl_seconds: int | None = None,
    emit_metrics: bool = False, s3_client: Any = None, bucket_name: str | None = None,
) -> Handler:
    """Return a projector handler bound to ``client`` and ``table_name``.

    Args:
        client: A boto3 DynamoDB client.
        table_name: The convlog table.
        tool_ttl_seconds: Lifetime of projected tool-cache entries (default: the
            ``TOOL_CACHE_TTL_SECONDS`` variable, else 3600; ``0`` turns them off).
        emit_metrics: Record Powertools metrics (the Lambda entry point flushes them).
        s3_client: A boto3 S3 client, with ``bucket_name``: the payload bucket.
        bucket_name: The payload bucket (large events and snapshots live there).
    """
    db = wrap_client(client)
    payloads = PayloadStore(s3_client, bucket_name) if s3_client and bucket_name else None
    if not db.is_async:  # the batch sends up to in_flight_limit requests at once
        db = DynamoClient(db.raw, threads=in_flight_limit(db))
    ttl = tool_ttl_seconds if tool_ttl_seconds is not None else _env_int("TOOL_CACHE_TTL_SECONDS")
    processor = BatchProcessor(
        event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False
    )

    def project(event: dict[str, Any], context: Any) -> dict[str, Any]:
        logger.append_keys(request_id=getattr(context, "aws_request_id", None))
        batch = ProjectionBatch(db, table_name, logger, tool_ttl_seconds=ttl, payloads=payloads)
        response = process_partial_response(
            event=event, record_handler=batch.collect, processor=processor, context=context
        )
        merged, outcome = run_sync(batch.flush(dict(response)))
        if not emit_metrics:
            return merged
        metrics.add_metric(name="EventsProjected", unit=MetricUnit.Count, value=outcome.projected)
        if outcome.lag_ms is not None:
            metrics.add_metric(
                name="ProjectionLag", unit=MetricUnit.Milliseconds, value=outcome.lag_ms
            )
        metrics.add_metric(
            name="RecordsFailed", unit=MetricUnit.Count, value=len(merged["batchItemFailures"])
        )
        return merged

    return project


@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point (``stream_handlers.projector.handler``)."""
    global _client, _s3
    bucket = os.environ.get("PAYLOAD_BUCKET") or None
    if _client is None:
        import boto3
        from botocore.config import Config

        config = Config(retries={"mode": "standard", "max_attempts": 8})
        _client = boto3.client(
            "dynamodb", config=config.merge(Config(max_pool_connections=MAX_IN_FLIGHT)))
        _s3 = boto3.client("s3", config=config) if bucket else None
    return build_handler(_client, os.environ["TABLE_NAME"], emit_metrics=True,
                         s3_client=_s3, bucket_name=bucket)(event, context)


def _env_int(name: str, default: int = 3600) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip().isdigit() else default
