"""A request-delaying HTTP proxy on 127.0.0.1: DynamoDB's network latency, locally.

The embedded endpoint answers in-process, so a design that sends many requests one
after another looks almost as fast as one that sends a few at once. ``DelayProxy``
forwards every request to the endpoint after a fixed delay (5 ms by default, about a
round trip to DynamoDB from inside its region); it serves requests concurrently, as
DynamoDB does, so concurrent requests overlap their delays. It counts the requests it
forwarded, by operation.

Example:
    ```python
    with DelayProxy(endpoint.url, delay_seconds=0.005) as proxy:
        client = boto3.client("dynamodb", endpoint_url=proxy.url, ...)
    ```
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length"}


class DelayProxy:
    """Forward every request to ``upstream`` after ``delay_seconds``.

    Args:
        upstream: The endpoint URL, e.g. ``EmbeddedEndpoint.url``.
        delay_seconds: The fixed delay added to each request.
    """

    def __init__(self, upstream: str, delay_seconds: float = 0.005) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.delay = delay_seconds
        self.seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._local = threading.local()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                proxy._handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The proxy's URL (give it to the client as ``endpoint_url``)."""
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> DelayProxy:
        self.thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(*self.upstream, timeout=120)
            self._local.conn = conn
        return conn

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        target = handler.headers.get("X-Amz-Target", "")
        with self._lock:
            self.seen[target.rsplit(".", 1)[-1]] += 1
        time.sleep(self.delay)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP_HEADERS}
        headers["Content-Length"] = str(len(body))
        conn = self._connection()
        try:
            conn.request("POST", handler.path, body=body, headers=headers)
            response = conn.getresponse()
        except (http.client.HTTPException, OSError):
            conn.close()  # a stale keep-alive connection: open a new one once
            conn.request("POST", handler.path, body=body, headers=headers)
            response = conn.getresponse()
        data = response.read()
        handler.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in _HOP_HEADERS and key.lower() not in ("server", "date"):
                handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
