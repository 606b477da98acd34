"""Lambda entry point of the sweeper: on a schedule, delete orphaned payload objects.

Deployed as ``stream_handlers.sweeper.handler`` with a daily EventBridge schedule
(``template.yaml``: ``SweeperFunction``). Environment: ``TABLE_NAME``,
``PAYLOAD_BUCKET`` and ``SWEEP_MIN_AGE_SECONDS`` (default 86400). Each run costs the
``ListObjectsV2`` pages of ``sessions/``, one consistent projected ``Scan`` of the
table, one ``HeadObject`` per orphan and one ``DeleteObjects`` per thousand orphans
(``convlog.sweep.sweep_orphans``; ``convlog sweep`` runs the same from a shell).

Example:
    ```python
    from stream_handlers.sweeper import sweep_once

    report = sweep_once(dynamodb, s3, "agent_sessions", "my-convlog-payloads")
    ```
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger

from convlog.sweep import SweepReport, sweep_orphans
from eventstore.client import wrap_client
from eventstore.payloads import SWEEP_MIN_AGE_SECONDS, PayloadStore

from .batch import run_sync

logger = Logger(service="convlog-sweeper")


def sweep_once(
    dynamodb: Any, s3: Any, table: str, bucket: str,
    *, min_age_seconds: float = SWEEP_MIN_AGE_SECONDS,
) -> SweepReport:
    """Delete the bucket's objects that no live item of ``table`` has pointed to lately."""
    return run_sync(sweep_orphans(wrap_client(dynamodb), table, PayloadStore(s3, bucket),
                                  min_age_seconds=min_age_seconds))


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point (``stream_handlers.sweeper.handler``)."""
    import boto3

    report = sweep_once(
        boto3.client("dynamodb"), boto3.client("s3"), os.environ["TABLE_NAME"],
        os.environ["PAYLOAD_BUCKET"],
        min_age_seconds=float(os.environ.get("SWEEP_MIN_AGE_SECONDS", SWEEP_MIN_AGE_SECONDS)),
    )
    summary = {"objects": report.objects, "referenced": report.referenced,
               "orphans": len(report.orphans), "young": report.young,
               "deleted": report.deleted}
    logger.info("payload bucket swept", extra=summary)
    return summary
