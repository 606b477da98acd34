"""The embedded AWS endpoint: moto's server (DynamoDB, Streams, S3), in-process, on 127.0.0.1.

Used by ``convlog demo``, ``convlog serve`` and the tests so that every call goes over
HTTP through real botocore clients. moto executes requests on several threads without
making a conditional write atomic, so the server here runs one request at a time: what
DynamoDB guarantees per item (a conditional put either wins or fails) then holds here too.

Example:
    ```python
    with EmbeddedEndpoint() as endpoint:
        client = endpoint.client("dynamodb")
        await create_table_if_not_exists(client, "agent_sessions")
    ```
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from eventstore.errors import OptionalDependencyError

LOCAL_EXTRA_HINT = (
    "the embedded endpoint needs moto: pip install -c constraints.txt -e '.[local]'"
)
LOCAL_REGION = "us-east-1"
LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
LOCAL_BUCKET = "convlog-payloads"

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def local_client_kwargs(url: str, service: str = "dynamodb") -> dict[str, Any]:
    """Keyword arguments for a client of the embedded endpoint at ``url``."""
    kwargs: dict[str, Any] = {"endpoint_url": url, "region_name": LOCAL_REGION,
                              **LOCAL_CREDENTIALS}
    if service == "s3":
        from botocore.config import Config

        kwargs["config"] = Config(s3={"addressing_style": "path"})
    return kwargs


def local_client(url: str, service: str = "dynamodb", **config: Any) -> Any:
    """A boto3 client for ``service`` on the embedded endpoint at ``url``."""
    import boto3

    make_client: Any = boto3.client  # the service name is not a literal here
    return make_client(service, **local_client_kwargs(url, service), **config)


class _Serialized:
    """WSGI middleware that runs one request at a time (moto is not linearizable)."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        with self.lock:
            return list(self.app(environ, start_response))


class EmbeddedEndpoint:
    """moto's DynamoDB (and Streams) server on 127.0.0.1, in a background thread.

    Args:
        port: Port to listen on; ``None`` picks a free one.
        host: Interface; only loopback is meant.

    Example:
        ```python
        endpoint = EmbeddedEndpoint().start()
        print(endpoint.url)  # http://127.0.0.1:54321
        endpoint.stop()
        ```
    """

    def __init__(self, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port or free_port()
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The endpoint URL, e.g. ``http://127.0.0.1:4566``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> EmbeddedEndpoint:
        """Start serving; returns ``self``."""
        os.environ.setdefault("MOTO_ALLOW_NONEXISTENT_REGION", "true")
        try:
            from moto.moto_server.threaded_moto_server import (  # type: ignore[attr-defined]
                MotoRequestHandler,
            )
            from moto.moto_server.werkzeug_app import (
                DomainDispatcherApplication,
                create_backend_app,
            )
            from werkzeug.serving import make_server
        except ImportError as exc:
            raise OptionalDependencyError(LOCAL_EXTRA_HINT) from exc

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        app = _Serialized(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(
            self.host, self.port, app, threaded=True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="convlog-endpoint", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and join the thread."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def client(self, service: str = "dynamodb", **config: Any) -> Any:
        """A boto3 client for ``service`` bound to this endpoint (S3: path-style)."""
        return local_client(self.url, service, **config)

    def client_kwargs(self, service: str = "dynamodb") -> dict[str, Any]:
        """Keyword arguments for ``create_client``/``boto3.client`` to reach this endpoint."""
        return local_client_kwargs(self.url, service)

    def __enter__(self) -> EmbeddedEndpoint:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
