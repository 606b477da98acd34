"""Lambda entry point of the audit console (API Gateway HTTP API, IAM-authorised).

``handler`` builds the FastAPI app of ``convlog.console`` through Mangum on its first
call, from ``TABLE_NAME``, ``CONSOLE_ADMIN``, ``CONSOLE_TENANT``, ``PAYLOAD_BUCKET``
and (admin: signed purge records) ``CONVLOG_DIGEST_BUCKET``/``CONVLOG_SIGNING_KEY``; the
template deploys it twice: read-only (audit role) and admin (purge role, POST /api/admin/* only).

Example:
    ```python
    from stream_handlers.console import handler

    response = handler(api_gateway_v2_event, lambda_context)
    ```
"""

from __future__ import annotations

from typing import Any

_app: Any = None


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Serve one API Gateway request with the console app."""
    global _app
    if _app is None:
        from convlog.console.server import lambda_app

        _app = lambda_app()
    response: dict[str, Any] = _app(event, context)
    return response
