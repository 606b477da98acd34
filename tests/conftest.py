"""Shared fixtures: a real moto server over HTTP, real boto3/aiobotocore clients."""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from convlog.local import EmbeddedEndpoint
from eventstore import create_table_if_not_exists

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("OPENAI_API_KEY", "sk-test-not-used")
os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")


@pytest.fixture(scope="session")
def endpoint() -> Iterator[EmbeddedEndpoint]:
    """moto's server on 127.0.0.1 and a free port, for the whole test run."""
    with EmbeddedEndpoint() as ep:
        yield ep


@pytest.fixture
def boto3_client(endpoint: EmbeddedEndpoint) -> Any:
    return endpoint.client("dynamodb")


@pytest.fixture
async def aio_client(endpoint: EmbeddedEndpoint) -> AsyncIterator[Any]:
    from aiobotocore.session import get_session

    async with get_session().create_client("dynamodb", **endpoint.client_kwargs()) as client:
        yield client


@pytest.fixture
async def table(boto3_client: Any) -> str:
    """A fresh convlog table per test."""
    name = f"convlog-{uuid.uuid4().hex[:10]}"
    await create_table_if_not_exists(boto3_client, name)
    return name


class RequestCounter:
    """Counts HTTP requests a botocore client sends, by operation name."""

    def __init__(self, client: Any) -> None:
        self.counts: Counter[str] = Counter()
        self.bytes_sent = 0
        client.meta.events.register("before-send.dynamodb", self._on_send)

    def _on_send(self, request: Any, **_: Any) -> None:
        target = request.headers.get("X-Amz-Target", b"")
        if isinstance(target, bytes):
            target = target.decode()
        self.counts[target.split(".")[-1]] += 1
        body = request.body or b""
        self.bytes_sent += len(body)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def reset(self) -> None:
        self.counts.clear()
        self.bytes_sent = 0


@pytest.fixture
def counter(boto3_client: Any) -> RequestCounter:
    """Counts the requests made through ``boto3_client``."""
    return RequestCounter(boto3_client)


# --- fault injection and client factories (helper A) -----------------------------------


@pytest.fixture
def proxy(endpoint: EmbeddedEndpoint) -> Iterator[Any]:
    """A ``tests.faults.FaultProxy`` in front of the moto server (fresh rules per test)."""
    from faults import FaultProxy

    with FaultProxy(endpoint.url) as fault_proxy:
        yield fault_proxy


# --- S3 (issue 13) -----------------------------------------------------------------------


class S3Counter:
    """Counts the S3 requests a botocore client sends, by HTTP method."""

    def __init__(self, client: Any) -> None:
        self.counts: Counter[str] = Counter()
        client.meta.events.register("before-send.s3", self._on_send)

    def _on_send(self, request: Any, **_: Any) -> None:
        self.counts[request.method] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def reset(self) -> None:
        self.counts.clear()


@pytest.fixture
def s3_client(endpoint: EmbeddedEndpoint) -> Any:
    """A boto3 S3 client on the embedded endpoint (path-style addressing)."""
    return endpoint.client("s3")


@pytest.fixture
async def bucket(s3_client: Any) -> str:
    """A fresh payload bucket per test."""
    from eventstore import create_bucket_if_not_exists

    name = f"convlog-{uuid.uuid4().hex[:10]}"
    await create_bucket_if_not_exists(s3_client, name)
    return name


@pytest.fixture
def s3_counter(s3_client: Any) -> S3Counter:
    """Counts the requests made through ``s3_client``."""
    return S3Counter(s3_client)
