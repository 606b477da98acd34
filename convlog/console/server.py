"""Run the console: under uvicorn in a thread (``convlog serve``, tests), or in Lambda.

``ConsoleServer`` starts uvicorn on 127.0.0.1 in a background thread and stops it on
``stop()``. ``lambda_app`` builds the Mangum adapter from the environment Lambda gives
the function (``TABLE_NAME``; ``PAYLOAD_BUCKET`` for payloads in S3;
``CONSOLE_ADMIN=true`` for the purge function; ``CONSOLE_TENANT`` for a tenant's
console).

Example:
    ```python
    with ConsoleServer(create_app(client, "agent_sessions"), port=8686) as server:
        print("console:", server.url)
    ```
"""

from __future__ import annotations

import errno
import os
import socket
import threading
import time
from typing import Any

from eventstore.errors import InvalidInputError, OptionalDependencyError

DEFAULT_CONSOLE_PORT = 8686
_INSTALL = "pip install 'convlog[console]'"


def check_installed() -> None:
    """Raise ``OptionalDependencyError`` unless the ``console`` extra is installed."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise OptionalDependencyError(
            f"the console needs FastAPI and uvicorn: {_INSTALL} ({exc})"
        ) from exc


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def check_port(port: int) -> None:
    """Fail with one line when 127.0.0.1:``port`` cannot be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            why = f"port {port} is in use" if exc.errno == errno.EADDRINUSE else str(exc)
            raise InvalidInputError(f"console cannot listen on 127.0.0.1:{port}: {why}") from exc


class ConsoleServer:
    """uvicorn serving an ASGI app on 127.0.0.1 from a daemon thread.

    Args:
        app: The ASGI app (``create_app(...)``).
        port: The port (``0``: a free one).

    Example:
        ```python
        server = ConsoleServer(app).start()
        try:
            requests.get(server.url + "api/info")
        finally:
            server.stop()
        ```
    """

    def __init__(self, app: Any, port: int = 0) -> None:
        import uvicorn

        self.port = port or free_port()
        check_port(self.port)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="off", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="convlog-console",
                                       daemon=True)

    @property
    def url(self) -> str:
        """The console's address, ending in ``/``."""
        return f"http://127.0.0.1:{self.port}/"

    def start(self, timeout: float = 10) -> ConsoleServer:
        """Start serving and wait until uvicorn accepts connections."""
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise InvalidInputError(f"the console did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> ConsoleServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def lambda_app(environ: dict[str, str] | None = None) -> Any:
    """The Mangum handler for API Gateway, configured from the environment."""
    import boto3
    from mangum import Mangum

    from .app import create_app

    env = os.environ if environ is None else environ
    table = env.get("TABLE_NAME")
    if not table:
        raise InvalidInputError("TABLE_NAME is not set")
    admin = env.get("CONSOLE_ADMIN", "false").lower() == "true"
    tenant = env.get("CONSOLE_TENANT") or None
    bucket = env.get("PAYLOAD_BUCKET") or None
    signer = None
    digests, key = env.get("CONVLOG_DIGEST_BUCKET"), env.get("CONVLOG_SIGNING_KEY")
    if admin and digests and key:  # the purge signs what it erases into the digests
        from ..anchor import DigestStore
        from ..purge_record import PurgeSigner, operator_identity

        store = DigestStore(boto3.client("s3"), boto3.client("kms"), digests, key, table)
        signer = PurgeSigner(store, by=operator_identity(boto3.client("sts")))
    app = create_app(boto3.client("dynamodb"), table, admin=admin, tenant=tenant,
                     s3_client=boto3.client("s3") if bucket else None, bucket_name=bucket,
                     signer=signer)
    return Mangum(app, lifespan="off")
