"""Lambda entry point of the anchor: on a schedule, sign and store one digest.

Deployed as ``stream_handlers.anchor.handler`` with an EventBridge schedule
(``template.yaml``: ``AnchorFunction``). Environment: ``TABLE_NAME``,
``DIGEST_BUCKET``, ``SIGNING_KEY`` (the KMS key ARN) and ``DIGEST_RETENTION_DAYS``.
Each run costs one ``ListObjectsV2``, one ``GetObject``, one KMS ``Sign``, one
``PutObject`` and the ``Scan`` pages of the table (``convlog.anchor.write_digest``).

Example:
    ```python
    from stream_handlers.anchor import anchor_once

    digest = anchor_once(dynamodb, s3, kms, "agent_sessions", "my-digests", key_arn)
    ```
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger

from convlog.anchor import Digest, DigestStore
from convlog.anchor_run import write_digest
from eventstore.log import EventLog

from .batch import run_sync

logger = Logger(service="convlog-anchor")


def anchor_once(
    dynamodb: Any, s3: Any, kms: Any, table: str, bucket: str, key_id: str,
    *, retention_days: int = 400,
) -> Digest:
    """Write one digest of every session head changed since the newest one."""
    store = DigestStore(s3, kms, bucket, key_id, table, retention_days=retention_days)
    return run_sync(write_digest(EventLog(dynamodb, table), store))


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point (``stream_handlers.anchor.handler``)."""
    import boto3

    digest = anchor_once(
        boto3.client("dynamodb"), boto3.client("s3"), boto3.client("kms"),
        os.environ["TABLE_NAME"], os.environ["DIGEST_BUCKET"], os.environ["SIGNING_KEY"],
        retention_days=int(os.environ.get("DIGEST_RETENTION_DAYS", "400")),
    )
    logger.info("digest written", extra={"number": digest.number, "heads": len(digest.heads)})
    return {"digest": digest.number, "heads": len(digest.heads)}
