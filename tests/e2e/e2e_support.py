"""Helpers of the end-to-end tests: endpoint probing, the stack handle, a request counter."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

DEFAULT_HOST = "localhost:4566"
STACK_ENV = "CONVLOG_STACK"
# LocalStack pulls the python3.12 Lambda image on the first invocation: be patient.
LOCALSTACK_TIMEOUT = float(os.environ.get("CONVLOG_E2E_TIMEOUT", "300"))


def split_host(host: str) -> tuple[str, int]:
    name, _, port = host.partition(":")
    return name or "localhost", int(port or 4566)


def probe(host: str, port: int) -> str:
    """``"localstack"`` if LocalStack answers, ``"busy"`` if something else holds the port
    (or answers), ``"free"`` if nothing listens."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/_localstack/health", timeout=3) as r:
            body = json.loads(r.read() or b"{}")
        return "localstack" if "services" in body else "busy"
    except urllib.error.HTTPError:
        return "busy"
    except (urllib.error.URLError, OSError, ValueError):
        pass
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return "busy"
    return "free"


class RequestCounter:
    """Counts the DynamoDB requests a botocore client sends, by operation."""

    def __init__(self, client: Any) -> None:
        self.counts: Counter[str] = Counter()
        client.meta.events.register("before-send.dynamodb", self._on_send)

    def _on_send(self, request: Any, **_: Any) -> None:
        target = request.headers.get("X-Amz-Target", b"")
        target = target.decode() if isinstance(target, bytes) else target
        self.counts[target.split(".")[-1]] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def reset(self) -> None:
        self.counts.clear()


@dataclass
class E2EStack:
    """Where the end-to-end tests run and how to wait for the projector."""

    mode: str
    table: str
    pump: Any = None
    endpoint: Any = None
    _clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str = "dynamodb") -> Any:
        """A new client from ``localstack_client`` (reads ``LOCALSTACK_HOST``)."""
        from localstack_client.session import Session

        return Session().client(service)

    @property
    def endpoint_url(self) -> str:
        """The DynamoDB endpoint URL ``localstack_client`` uses (for the CLI)."""
        from localstack_client.config import get_service_endpoint

        url = get_service_endpoint("dynamodb")
        assert url is not None
        return str(url)

    def cli_args(self) -> list[str]:
        """``--table``/``--endpoint-url``/``--region`` for ``convlog`` verbs."""
        return ["--table", self.table, "--endpoint-url", self.endpoint_url,
                "--region", "us-east-1"]

    async def settle(
        self, check: Callable[[], Awaitable[bool]], what: str, timeout: float | None = None
    ) -> None:
        """Wait until the projections satisfy ``check``.

        Embedded: drain the local stream pump, then check (the pump is synchronous, so
        one round normally suffices). LocalStack: poll while its event source mapping
        invokes the projector Lambda.
        """
        limit = timeout or (LOCALSTACK_TIMEOUT if self.pump is None else 10.0)
        deadline = time.monotonic() + limit
        while True:
            if self.pump is not None:
                await asyncio.to_thread(self.pump.drain)
            if await check():
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.mode}: {what} not projected within {limit:.0f}s")
            await asyncio.sleep(0.05 if self.pump is not None else 1.0)
