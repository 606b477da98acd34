"""Request and response models of the audit console API (pydantic, shown in OpenAPI).

Every answer of ``convlog.console.app`` is one of these models, so the OpenAPI document
at ``/openapi.json`` describes exactly what a client receives, errors included
(``ErrorBody``).

Example:
    ```python
    from convlog.console.models import SessionTarget

    SessionTarget(session_id="alice-1")      # valid
    SessionTarget(session_id="a", user_id="b")  # ValidationError: extra field
    ```
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ChainStatus = Literal["ok", "broken", "unverified", "expired"]
TimelineKind = Literal[
    "items_added", "item_popped", "session_cleared", "items_replaced", "usage_recorded",
    "branch_created", "branch_deleted", "missing", "corrupt",
]
ProblemKind = Literal[
    "changed", "missing", "reordered", "corrupt", "truncated", "deleted", "rewritten",
    "erased",
]  # convlog.verify.ProblemKind
JsonItem = dict[str, Any]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(_Model):
    """Every error answer: a short code and a sentence that says what went wrong."""

    error: str = Field(description="what kind of failure, e.g. not_found, invalid_input")
    detail: str = Field(description="one human-readable sentence")


class ConsoleInfo(_Model):
    """What this console serves and what it allows."""

    table: str
    read_only: bool = Field(description="true unless the console was started with admin rights")
    tenant: str | None = Field(
        description="when set, only user and session ids starting with '<tenant>/' are served"
    )


class UsageTotals(_Model):
    """What the session's runs consumed (every ``store_run_usage``), as projected."""

    requests: int
    input_tokens: int
    output_tokens: int
    total_tokens: int


class SessionSummary(_Model):
    """One session of a user, as the per-user index knows it."""

    session_id: str
    title: str | None
    created: str
    last_active: str
    item_count: int
    usage: UsageTotals
    branch_id: str | None = Field(
        default=None, description="set when this entry is a branch of session_id")


class SessionsPage(_Model):
    """A page of a user's sessions, most recently active first."""

    user_id: str
    sessions: list[SessionSummary]
    user_usage: UsageTotals | None = Field(
        default=None,
        description="the user's usage over all sessions, as the projector keeps it "
        "(first page only; null on pages a cursor fetches)")
    cursor: str | None = Field(description="pass as `cursor` to get the next page; null at the end")


class ProblemOut(_Model):
    """The first broken link of a session's chain."""

    seq: int
    kind: ProblemKind
    message: str


class VerifyOut(_Model):
    """The result of walking a session's seq sequence and hash chain."""

    session_id: str
    ok: bool
    events: int
    first_seq: int | None
    last_seq: int | None
    expired_prefix: list[int] | None = Field(
        description="[first, last] seqs of leading events that expired (TTL), if any"
    )
    problem: ProblemOut | None


class ItemChange(_Model):
    """What one event did to the item list."""

    added: list[JsonItem] = Field(default_factory=list)
    removed: list[JsonItem] = Field(default_factory=list)
    count_before: int
    count_after: int


class TimelineEvent(_Model):
    """One event of a session (or the place of a missing or undecodable one)."""

    seq: int
    kind: TimelineKind
    ts: str | None
    user_id: str | None
    hash: str | None
    prev_hash: str | None
    ttl: int | None
    status: ChainStatus = Field(
        description="ok: proven by the chain; broken: the first broken link; unverified: "
        "after a broken link; expired: in the TTL-expired prefix"
    )
    change: ItemChange


class TimelineOut(_Model):
    """A session's events, oldest first, each with its chain status and item change."""

    session_id: str
    events: list[TimelineEvent]
    verify: VerifyOut


class ItemsOut(_Model):
    """The items of a session as they stood after ``at_seq``."""

    session_id: str
    at_seq: int = Field(description="the last seq included (0 when no event is)")
    count: int
    items: list[JsonItem]
    seqs: list[int] = Field(description="for each item, the seq of the event that added it")


class ToolEntryOut(_Model):
    """One tool-cache entry written from a session's tool calls."""

    tool_name: str
    arguments_hash: str
    output: Any
    created: str
    ttl: int | None
    call_id: str | None
    hits: int


class ToolEntriesOut(_Model):
    """The live tool-cache entries whose result came from this session."""

    session_id: str
    entries: list[ToolEntryOut]


class SessionTarget(_Model):
    """Erase one session."""

    session_id: str = Field(min_length=1, max_length=1024, pattern=r"\S")


SharedChoice = Literal["session", "content"]


class UserTarget(_Model):
    """Erase every session of one user."""

    user_id: str = Field(min_length=1, max_length=1024, pattern=r"\S")
    shared: SharedChoice | None = Field(
        default=None,
        description="for sessions that hold other users' events too (the plan's `shared`): "
        "`session` deletes them whole, `content` erases only this user's content and keeps "
        "the chain verifiable; required when the plan lists any")


PurgeTarget = SessionTarget | UserTarget
_CONFIRM = Field(min_length=1, max_length=128,
                 description="the `confirm` token of POST /api/admin/purge/plan")


class ConfirmedSessionPurge(SessionTarget):
    """Erase one session, confirmed with the token of its plan."""

    confirm: str = _CONFIRM


class ConfirmedUserPurge(UserTarget):
    """Erase a user's sessions, confirmed with the token of their plan."""

    confirm: str = _CONFIRM


PurgeRequest = ConfirmedSessionPurge | ConfirmedUserPurge


class PurgePlanOut(_Model):
    """What a purge would delete, and the token that confirms exactly this plan."""

    sessions: list[str]
    counts: dict[str, int]
    items: int
    shared: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        description="sessions holding other users' events: session -> other user -> events")
    confirm: str = Field(description="send back with POST /api/admin/purge; changes with the plan")


class PurgeDoneOut(_Model):
    """What a purge deleted (whole sessions) and erased (one user's content)."""

    sessions: list[str]
    deleted: int
    erased_content: list[str] = Field(
        default_factory=list, description="shared sessions where only the user's content went")
    erased_events: int = 0
    signed_digests: list[int] = Field(
        default_factory=list, description="digests holding the signed purge records")
