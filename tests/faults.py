"""Faults injected by an HTTP proxy in front of the moto server.

``FaultProxy`` is ``benchmarks.proxy.HttpProxy`` (one proxy serves the fault tests and
the benchmarks' request delay). Clients (boto3 or aiobotocore) point their
``endpoint_url`` at ``FaultProxy.url``; every request is forwarded to the real endpoint
unless a rule matches it. Rules are armed per DynamoDB operation (the ``X-Amz-Target``
suffix, e.g. ``PutItem``) and fire a given number of times:

* ``drop_response(op)`` -- forward the request (the write lands), then close the
  connection without answering: the client sees a lost response.
* ``error(op, code, times=n)`` -- answer with HTTP 400 and a DynamoDB error body
  (``ThrottlingException``, ``ProvisionedThroughputExceededException``, ...) without
  forwarding: nothing lands.
* ``delay(seconds, op)`` -- wait before forwarding.

``seen`` counts every request the proxy received, by operation, so tests can assert how
many attempts botocore's retry mode made.
"""

from __future__ import annotations

from typing import Any

from benchmarks.proxy import HttpProxy as FaultProxy
from benchmarks.proxy import Rule

__all__ = ["FaultProxy", "Rule", "aio_client_for", "boto3_client_for"]


def boto3_client_for(url: str, **config: Any) -> Any:
    """A boto3 DynamoDB client for ``url``; ``config`` goes to ``botocore.config.Config``."""
    import boto3
    from botocore.config import Config

    from convlog.local import LOCAL_CREDENTIALS, LOCAL_REGION

    return boto3.client(
        "dynamodb", endpoint_url=url, region_name=LOCAL_REGION,
        config=Config(**config) if config else None, **LOCAL_CREDENTIALS,
    )


def aio_client_for(url: str, **config: Any) -> Any:
    """An aiobotocore client context manager for ``url`` (use ``async with``)."""
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    from convlog.local import LOCAL_CREDENTIALS, LOCAL_REGION

    return get_session().create_client(
        "dynamodb", endpoint_url=url, region_name=LOCAL_REGION,
        config=AioConfig(**config) if config else None, **LOCAL_CREDENTIALS,
    )
