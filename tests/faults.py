"""A fault-injecting HTTP proxy in front of the moto server.

Clients (boto3 or aiobotocore) point their ``endpoint_url`` at ``FaultProxy.url``; every
request is forwarded to the real endpoint unless a rule matches it. Rules are armed per
DynamoDB operation (the ``X-Amz-Target`` suffix, e.g. ``PutItem``) and fire a given number
of times:

* ``drop_response(op)`` -- forward the request (the write lands), then close the
  connection without answering: the client sees a lost response.
* ``error(op, code, times=n)`` -- answer with HTTP 400 and a DynamoDB error body
  (``ThrottlingException``, ``ProvisionedThroughputExceededException``, ...) without
  forwarding: nothing lands.

``seen`` counts every request the proxy received, by operation, so tests can assert how
many attempts botocore's retry mode made.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length"}


@dataclass
class Rule:
    op: str
    action: str  # "drop" or "error"
    times: int
    code: str = ""
    status: int = 400
    fired: int = 0


class FaultProxy:
    """A threaded HTTP proxy that forwards to ``upstream`` and injects faults."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.seen: Counter[str] = Counter()
        self.rules: list[Rule] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                proxy._handle(self)

            def do_GET(self) -> None:
                proxy._handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FaultProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- rules ---------------------------------------------------------------------------

    def drop_response(self, op: str, times: int = 1) -> Rule:
        """Forward the next ``times`` requests of ``op``, then drop the connection."""
        return self._arm(Rule(op, "drop", times))

    def error(self, op: str, code: str, *, times: int = 1, status: int = 400) -> Rule:
        """Answer the next ``times`` requests of ``op`` with a DynamoDB error ``code``."""
        return self._arm(Rule(op, "error", times, code=code, status=status))

    def clear(self) -> None:
        with self.lock:
            self.rules.clear()
            self.seen.clear()

    def _arm(self, rule: Rule) -> Rule:
        with self.lock:
            self.rules.append(rule)
        return rule

    def _match(self, op: str) -> Rule | None:
        with self.lock:
            self.seen[op] += 1
            for rule in self.rules:
                if rule.op == op and rule.fired < rule.times:
                    rule.fired += 1
                    return rule
        return None

    # -- forwarding ------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        target = handler.headers.get("X-Amz-Target", "")
        op = target.rsplit(".", 1)[-1] if target else handler.command
        rule = self._match(op)
        if rule is not None and rule.action == "error":
            payload = json.dumps(
                {"__type": f"com.amazonaws.dynamodb.v20120810#{rule.code}",
                 "message": f"injected {rule.code}"}
            ).encode()
            self._reply(handler, rule.status, [("Content-Type", "application/x-amz-json-1.0")],
                        payload)
            return
        status, headers, data = self._forward(handler, body)
        if rule is not None and rule.action == "drop":
            handler.close_connection = True
            return
        self._reply(handler, status, headers, data)

    def _forward(
        self, handler: BaseHTTPRequestHandler, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
        try:
            headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP_HEADERS}
            headers["Content-Length"] = str(len(body))
            conn.request(handler.command, handler.path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_HEADERS]
            return response.status, kept, data
        finally:
            conn.close()

    @staticmethod
    def _reply(
        handler: BaseHTTPRequestHandler, status: int, headers: list[tuple[str, str]], data: bytes
    ) -> None:
        handler.send_response(status)
        for key, value in headers:
            if key.lower() not in ("server", "date"):
                handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


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
