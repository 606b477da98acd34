"""An HTTP proxy on 127.0.0.1 in front of the embedded endpoint: delays and faults.

Clients (boto3 or aiobotocore, DynamoDB or S3) point their ``endpoint_url`` at
``HttpProxy.url``; every request is forwarded to the real endpoint, concurrently (a
thread per client connection, each with its own keep-alive connection upstream), unless
a rule says otherwise. ``seen`` counts the requests received, by operation (the
DynamoDB ``X-Amz-Target`` suffix, e.g. ``PutItem``; the HTTP method for S3).

Rules, armed per operation (``"*"``: every operation):

* ``delay(seconds)`` -- wait before forwarding: DynamoDB's network latency, locally
  (the benchmarks' 5 ms per request; concurrent requests overlap their delays, as on
  DynamoDB). Fires every time unless ``times`` is given.
* ``drop_response(op)`` -- forward the request (the write lands), then close the
  connection without answering: the client sees a lost response.
* ``error(op, code, times=n)`` -- answer with HTTP 400 and a DynamoDB error body
  (``ThrottlingException``, ``AccessDeniedException``, ...) without forwarding.

The benchmarks use it for the delay (``benchmarks.projector``); the fault tests import
it as ``tests.faults.FaultProxy``.

Example:
    ```python
    with HttpProxy(endpoint.url).delay(0.005) as proxy:
        client = boto3.client("dynamodb", endpoint_url=proxy.url, ...)
    print(proxy.seen["BatchGetItem"])
    ```
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length"}
EVERY = "*"


@dataclass
class Rule:
    """One armed rule: ``action`` on ``op`` for the next ``times`` requests."""

    op: str
    action: str  # "delay", "drop" or "error"
    times: int | None  # None: every time
    code: str = ""
    status: int = 400
    seconds: float = 0.0
    fired: int = 0

    def take(self, op: str) -> bool:
        """Whether the rule fires for ``op`` now (counting it if it does)."""
        if self.op not in (op, EVERY) or (self.times is not None and self.fired >= self.times):
            return False
        self.fired += 1
        return True


class HttpProxy:
    """A threaded HTTP proxy that forwards to ``upstream``, delaying or failing on rule.

    Args:
        upstream: The endpoint URL, e.g. ``EmbeddedEndpoint.url``.
        delay_seconds: Shorthand for ``delay(delay_seconds)`` on every request.

    Example:
        ```python
        with HttpProxy(endpoint.url) as proxy:
            proxy.error("PutItem", "ThrottlingException", times=2)
        ```
    """

    def __init__(self, upstream: str, delay_seconds: float = 0.0) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.seen: Counter[str] = Counter()
        self.rules: list[Rule] = []
        self.lock = threading.Lock()
        self._local = threading.local()
        if delay_seconds:
            self.delay(delay_seconds)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                proxy._handle(self)

            do_GET = do_PUT = do_HEAD = do_DELETE = do_POST

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The proxy's URL (give it to the client as ``endpoint_url``)."""
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> HttpProxy:
        """Serve in a background thread."""
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> HttpProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- rules ---------------------------------------------------------------------------

    def delay(self, seconds: float, op: str = EVERY, *, times: int | None = None) -> HttpProxy:
        """Wait ``seconds`` before forwarding each request of ``op``."""
        self._arm(Rule(op, "delay", times, seconds=seconds))
        return self

    def drop_response(self, op: str, times: int = 1) -> Rule:
        """Forward the next ``times`` requests of ``op``, then drop the connection."""
        return self._arm(Rule(op, "drop", times))

    def error(self, op: str, code: str, *, times: int = 1, status: int = 400) -> Rule:
        """Answer the next ``times`` requests of ``op`` with a DynamoDB error ``code``."""
        return self._arm(Rule(op, "error", times, code=code, status=status))

    def clear(self) -> None:
        """Forget every rule and count."""
        with self.lock:
            self.rules.clear()
            self.seen.clear()

    def _arm(self, rule: Rule) -> Rule:
        with self.lock:
            self.rules.append(rule)
        return rule

    def _match(self, op: str) -> tuple[float, Rule | None]:
        """The delay to add and the fault rule (drop or error) that fires, if any."""
        delay, fault = 0.0, None
        with self.lock:
            self.seen[op] += 1
            for rule in self.rules:
                if rule.action == "delay":
                    if rule.take(op):
                        delay += rule.seconds
                elif fault is None and rule.take(op):
                    fault = rule
        return delay, fault

    # -- forwarding ------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        target = handler.headers.get("X-Amz-Target", "")
        op = target.rsplit(".", 1)[-1] if target else handler.command
        delay, rule = self._match(op)
        if delay:
            time.sleep(delay)
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

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(*self.upstream, timeout=120)
            self._local.conn = conn
        return conn

    def _forward(
        self, handler: BaseHTTPRequestHandler, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP_HEADERS}
        headers["Content-Length"] = str(len(body))
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request(handler.command, handler.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                break
            except (http.client.HTTPException, OSError):
                conn.close()  # a stale keep-alive connection: open a new one once
                self._local.conn = None
                if attempt == 2:
                    raise
        kept = [(k, v) for k, v in response.getheaders()
                if k.lower() not in _HOP_HEADERS or (handler.command == "HEAD"
                                                     and k.lower() == "content-length")]
        return response.status, kept, data

    @staticmethod
    def _reply(
        handler: BaseHTTPRequestHandler, status: int, headers: list[tuple[str, str]], data: bytes
    ) -> None:
        handler.send_response(status)
        for key, value in headers:
            if key.lower() not in ("server", "date"):
                handler.send_header(key, value)
        if handler.command != "HEAD":
            handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
