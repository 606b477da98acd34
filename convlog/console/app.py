"""The audit console's HTTP API and page: a FastAPI app over ``ConsoleService``.

Read-only by default. ``admin=True`` adds nothing new to the document but lets the two
purge operations run (otherwise they answer 403); a purge needs the ``confirm`` token of
a fresh plan. The same app runs under uvicorn (``convlog serve``) and in Lambda behind
API Gateway through Mangum (``stream_handlers.console``), with no adapter of our own.
Ids go in query strings, not paths, because session and user ids may contain ``/``.
No CORS headers are sent: the page is served by the API itself (same origin).

Example:
    ```python
    import uvicorn
    from convlog.console.app import create_app

    app = create_app(boto3.client("dynamodb"), "agent_sessions")
    uvicorn.run(app, host="127.0.0.1", port=8686)
    ```
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from importlib.resources import files
from typing import Annotated, Any

from fastapi import Body, FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from eventstore.errors import (
    AccessDeniedError,
    ConvlogError,
    CorruptEventError,
    InvalidInputError,
    StorageError,
)
from eventstore.sessions_index import MAX_LIMIT

from ..purge_record import PurgeSigner
from .models import (
    ConfirmedSessionPurge,
    ConsoleInfo,
    ErrorBody,
    ItemsOut,
    PurgeDoneOut,
    PurgePlanOut,
    PurgeRequest,
    PurgeTarget,
    SessionsPage,
    SessionTarget,
    TimelineOut,
    ToolEntriesOut,
    UserTarget,
    VerifyOut,
)
from .service import ConsoleService, NotFoundError, PlanChangedError

STATIC = files("convlog.console") / "static"
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    reasons = {400: "bad input", 403: "not allowed", 404: "no such session or user",
               409: "conflict (a broken log, or a purge plan that changed)",
               503: "the table cannot be read"}
    return {code: {"model": ErrorBody, "description": reasons[code]} for code in codes}


SessionId = Annotated[str, Query(min_length=1, max_length=1024, pattern=r"\S",
                                 description="the session")]
READ = _errors(400, 403, 404, 409, 503)


def create_app(
    client: Any, table: str, *, admin: bool = False, tenant: str | None = None,
    s3_client: Any = None, bucket_name: str | None = None,
    signer: PurgeSigner | None = None,
) -> FastAPI:
    """Build the console app for one table.

    Args:
        client: A boto3 DynamoDB client; its credentials bound what the console can read.
        table: The convlog table.
        admin: Allow the purge operations (an admin deployment with a purge role).
        tenant: Serve only user and session ids that start with ``<tenant>/``.
        s3_client: A boto3 S3 client for payloads offloaded to the payload bucket.
        bucket_name: The payload bucket (events and snapshots too large for an item).
        signer: Signs what a purge erases into the anchor digests (with digests in use,
            an unsigned purge reads as tampering to ``convlog verify``).
    """
    service = ConsoleService(client, table, tenant=tenant, s3_client=s3_client,
                             bucket_name=bucket_name, signer=signer)
    app = FastAPI(
        title="convlog audit console",
        version="1.0",
        description="Sessions, timelines, states and hash-chain proofs of a convlog table. "
        "Read-only unless the console runs with admin rights.",
        docs_url=None, redoc_url=None,
    )
    _install_error_handlers(app)

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers.update(_HEADERS)
        return response

    @app.get("/api/info", response_model=ConsoleInfo, tags=["console"])
    async def info() -> ConsoleInfo:
        """What this console serves and whether it may purge."""
        return ConsoleInfo(table=table, read_only=not admin, tenant=tenant)

    @app.get("/api/sessions", response_model=SessionsPage, responses=READ, tags=["read"])
    async def sessions(
        user_id: Annotated[str, Query(min_length=1, max_length=1024, pattern=r"\S")],
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 20,
        cursor: Annotated[str | None, Query(min_length=1, max_length=4096)] = None,
    ) -> SessionsPage:
        """A user's sessions, most recently active first, paged by ``cursor``."""
        return await service.sessions(user_id, limit=limit, cursor=cursor)

    @app.get("/api/timeline", response_model=TimelineOut, responses=READ, tags=["read"])
    async def timeline(session_id: SessionId) -> TimelineOut:
        """Every event with its chain status and what it changed in the item list."""
        return await service.timeline(session_id)

    @app.get("/api/items", response_model=ItemsOut, responses=READ, tags=["read"])
    async def items(
        session_id: SessionId,
        at_seq: Annotated[int | None, Query(ge=0, le=10**12 - 1)] = None,
        as_of: Annotated[datetime | None, Query(description="ISO 8601 time; no offset: UTC")]
        = None,
    ) -> ItemsOut:
        """The items after event ``at_seq`` and at ``as_of`` (both: the earlier point)."""
        return await service.items(session_id, at_seq=at_seq, as_of=as_of)

    @app.get("/api/verify", response_model=VerifyOut, responses=READ, tags=["read"])
    async def verify(session_id: SessionId) -> VerifyOut:
        """The seq sequence and hash chain, with the first broken link."""
        return await service.verify(session_id)

    @app.get("/api/tools", response_model=ToolEntriesOut, responses=READ, tags=["read"])
    async def tools(session_id: SessionId) -> ToolEntriesOut:
        """Tool-cache entries whose result came from this session's tool calls."""
        return await service.tool_entries(session_id)

    @app.get(
        "/api/export", response_class=StreamingResponse, responses={
            200: {"content": {"application/x-ndjson": {"schema": {"type": "string"}}},
                  "description": "one JSON event per line (convlog replay --format jsonl)"},
            **READ,
        }, tags=["read"],
    )
    async def export(session_id: SessionId) -> StreamingResponse:
        """The session's events as JSON lines, for ``convlog import``."""
        lines = [line async for line in service.export(session_id)]
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in session_id)[:100]
        return StreamingResponse(
            iter(lines), media_type="application/x-ndjson",
            headers={"Content-Disposition": f'attachment; filename="{name}.jsonl"'},
        )

    def require_admin() -> None:
        if not admin:
            raise PermissionError("purge is disabled: this console is read-only")

    @app.post("/api/admin/purge/plan", response_model=PurgePlanOut,
              responses=_errors(400, 403, 404, 503), tags=["admin"])
    async def purge_plan(target: Annotated[PurgeTarget, Body()]) -> PurgePlanOut:
        """Admin only: what a purge would delete, and its confirmation token."""
        require_admin()
        return await service.purge_plan(target)

    @app.post("/api/admin/purge", response_model=PurgeDoneOut,
              responses=_errors(400, 403, 404, 409, 503), tags=["admin"])
    async def purge(request: Annotated[PurgeRequest, Body()]) -> PurgeDoneOut:
        """Admin only: erase the session or user, if ``confirm`` matches the current plan."""
        require_admin()
        target: PurgeTarget = (
            SessionTarget(session_id=request.session_id)
            if isinstance(request, ConfirmedSessionPurge)
            else UserTarget(user_id=request.user_id, shared=request.shared)
        )
        return await service.purge(target, request.confirm)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"), media_type="text/html")

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app


def _error(status: int, code: str, detail: str) -> JSONResponse:
    body = ErrorBody(error=code, detail=" ".join(detail.split())[:500] or code)
    return JSONResponse(body.model_dump(), status_code=status)


def _install_error_handlers(app: FastAPI) -> None:
    async def not_found(_: Request, exc: Exception) -> Response:
        return _error(404, "not_found", str(exc))

    async def conflict(_: Request, exc: Exception) -> Response:
        return _error(409, "conflict", str(exc))

    async def invalid(_: Request, exc: Exception) -> Response:
        return _error(400, "invalid_input", str(exc))

    async def forbidden(_: Request, exc: Exception) -> Response:
        return _error(403, "forbidden", str(exc))

    async def storage(_: Request, exc: Exception) -> Response:
        return _error(503, "storage", str(exc))

    async def other(_: Request, exc: Exception) -> Response:
        return _error(503, "error", str(exc))

    app.add_exception_handler(NotFoundError, not_found)
    app.add_exception_handler(PlanChangedError, conflict)
    app.add_exception_handler(CorruptEventError, conflict)
    app.add_exception_handler(InvalidInputError, invalid)
    app.add_exception_handler(PermissionError, forbidden)
    app.add_exception_handler(AccessDeniedError, forbidden)
    app.add_exception_handler(StorageError, storage)
    app.add_exception_handler(ConvlogError, other)
