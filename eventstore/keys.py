"""The key layout of the convlog table.

| item | ``pk`` | ``sk`` |
|---|---|---|
| event | ``SESSION#<id>`` | ``EVENT#<seq, 12 digits>`` (parts: ``...#<digest16>#0001``) |
| session meta | ``SESSION#<id>`` | ``META`` |
| snapshot | ``SESSION#<id>`` | ``SNAPSHOT`` (parts: ``SNAPSHOT#<digest16>#0001``) |
| tool cache | ``TOOL#<name>``, scoped ``TOOL#<scope>/<name>`` | ``ARGS#<sha256>`` |
| tool invalidation | ``TOOL#[<scope>/]<name>`` | ``INVALIDATED`` |
| cache entry owned by a session | ``SESSION#<id>`` | ``CACHE#<sha256 of the entry key>`` |

A session id ``<tenant>/<rest>`` belongs to ``<tenant>`` (``tenant_of``); its tool-cache
entries live in the scope of that tenant, and it is listed only under users of that
tenant. DynamoDB limits a partition key to 2048 bytes and a sort key to 1024 bytes; the
``validate_*`` functions reject ids too long for any key they feed.

``CACHE#`` < ``EVENT#`` < ``META`` < ``SNAPSHOT`` < ``SNAPSHOT#...`` (parts and sealed
chunks, ``eventstore.chunks``), so a newest-first ``Query`` on a session partition
returns the snapshot, then the meta item, then the newest events.

Example:
    ```python
    from eventstore.keys import session_pk, event_sk

    key = {"pk": {"S": session_pk("user-123")}, "sk": {"S": event_sk(7)}}
    ```
"""

from __future__ import annotations

import hashlib
from typing import Any

from .errors import EventKeyError, InvalidInputError, InvalidSessionIdError, InvalidUserIdError

SESSION_PREFIX = "SESSION#"
EVENT_PREFIX = "EVENT#"
META_SK = "META"
SNAPSHOT_SK = "SNAPSHOT"
TOOL_PREFIX = "TOOL#"
ARGS_PREFIX = "ARGS#"
USER_PREFIX = "USER#"
CACHE_REF_PREFIX = "CACHE#"
# gsi1sk of a writer's user record on an event; sorts before every "<ISO time>#..." key
USER_RECORD_SK_PREFIX = "#"
INVALIDATED_SK = "INVALIDATED"
SCOPE_SEPARATOR = "/"
MAX_PARTITION_KEY_BYTES = 2048
MAX_SORT_KEY_BYTES = 1024
# gsi1sk of a META item is "<ISO time, 24 chars>#<session id>"
INDEX_SORT_PREFIX_BYTES = 25
SEQ_DIGITS = 12
MAX_SESSION_ID_BYTES = 1024
MAX_SEQ = 10**SEQ_DIGITS - 1
PART_TAG_CHARS = 16


def validate_session_id(session_id: object) -> str:
    """Return ``session_id`` if it can key a partition, else raise.

    Raises:
        InvalidSessionIdError: Not a string, empty, longer than 1 KB in UTF-8, or
            holding a lone surrogate (which UTF-8 cannot encode).
    """
    if not isinstance(session_id, str):
        raise InvalidSessionIdError(
            f"session_id must be a string, got {type(session_id).__name__}"
        )
    if not session_id.strip():
        raise InvalidSessionIdError("session_id must not be empty or blank")
    try:
        size = len(session_id.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidSessionIdError(
            f"session_id holds a lone surrogate at index {exc.start}, which UTF-8 cannot store"
        ) from None
    if size > MAX_SESSION_ID_BYTES:
        raise InvalidSessionIdError(
            f"session_id is {size} bytes in UTF-8; the limit is {MAX_SESSION_ID_BYTES}"
        )
    return session_id


def tenant_of(identifier: str) -> str | None:
    """The tenant of a session or user id ``<tenant>/<rest>``, or ``None`` (global)."""
    tenant, sep, rest = identifier.partition(SCOPE_SEPARATOR)
    return tenant if sep and tenant and rest else None


def user_index_problem(user_id: str, session_id: str) -> str | None:
    """Why ``user_id`` may not index ``session_id`` (``None`` when it may).

    The user must belong to the session's tenant (when the session has one), and
    ``USER#<user>`` and ``<time>#<session id>`` must fit the index's key limits.
    """
    size = len((USER_PREFIX + user_id).encode("utf-8"))
    if size > MAX_PARTITION_KEY_BYTES:
        return (f"user_id makes an index partition key of {size} bytes; DynamoDB's limit "
                f"is {MAX_PARTITION_KEY_BYTES}")
    sort = INDEX_SORT_PREFIX_BYTES + len(session_id.encode("utf-8"))
    if sort > MAX_SORT_KEY_BYTES:
        return (f"with a user_id, the session id makes an index sort key of {sort} bytes; "
                f"DynamoDB's limit is {MAX_SORT_KEY_BYTES} bytes (1024)")
    tenant = tenant_of(session_id)
    if tenant is not None and tenant_of(user_id) != tenant:
        return (f"user {user_id!r} is not of the session's tenant {tenant!r} (name users "
                f"{tenant}/<name>)")
    return None


def validate_user_id(user_id: object, session_id: str) -> str:
    """Return ``user_id`` if it can index ``session_id`` in ``by_user``, else raise.

    Raises:
        InvalidSessionIdError: The session id is too long to be indexed with a user.
        InvalidUserIdError: Not a non-empty string, too long for a key, or of another
            tenant than the session.
    """
    if not isinstance(user_id, str) or not user_id:
        raise InvalidUserIdError("user_id must be a non-empty string or None")
    problem = user_index_problem(user_id, session_id)
    if problem is not None and "session id" in problem:
        raise InvalidSessionIdError(problem)
    if problem is not None:
        raise InvalidUserIdError(problem)
    return user_id


def validate_scope(scope: object) -> str | None:
    """Return a tool-cache scope (``None``: global), or raise ``InvalidInputError``."""
    if scope is None:
        return None
    if not isinstance(scope, str) or not scope or SCOPE_SEPARATOR in scope:
        raise InvalidInputError(f"scope must be a non-empty string without '/', got {scope!r}")
    if len(scope.encode("utf-8")) > MAX_SORT_KEY_BYTES:
        raise InvalidInputError(f"scope is longer than {MAX_SORT_KEY_BYTES} bytes")
    return scope


def validate_tool_name(tool_name: object, scope: str | None = None) -> str:
    """Return ``tool_name`` if it can key a cache partition in ``scope``, else raise.

    Raises:
        InvalidInputError: Not a non-empty string, holds ``/`` (the scope separator), or
            too long for a partition key.
    """
    if not isinstance(tool_name, str) or not tool_name:
        raise InvalidInputError("tool_name must be a non-empty string")
    if SCOPE_SEPARATOR in tool_name:
        raise InvalidInputError(f"tool_name must not contain '/', got {tool_name!r}")
    size = len(tool_pk(tool_name, scope).encode("utf-8"))
    if size > MAX_PARTITION_KEY_BYTES:
        raise InvalidInputError(f"tool_name makes a partition key of {size} bytes (max 2048)")
    return tool_name


def session_pk(session_id: str) -> str:
    """Partition key of a session."""
    return SESSION_PREFIX + session_id


def session_id_of(pk: str) -> str:
    """Session id from a session partition key."""
    return pk[len(SESSION_PREFIX) :]


def event_sk(seq: int) -> str:
    """Sort key of the event with sequence number ``seq``."""
    return f"{EVENT_PREFIX}{seq:0{SEQ_DIGITS}d}"


def part_sk(base_sk: str, part: int) -> str:
    """Sort key of part ``part`` (1-based) of an item split into parts."""
    return f"{base_sk}#{part:04d}"


def seq_of(sk: str) -> int:
    """Sequence number of an event (or event part) sort key.

    Raises:
        EventKeyError: The key names no seq (a ``CorruptEventError`` and a ``ValueError``).
    """
    digits = sk[len(EVENT_PREFIX) : len(EVENT_PREFIX) + SEQ_DIGITS]
    if not (sk.startswith(EVENT_PREFIX) and len(digits) == SEQ_DIGITS and digits.isdigit()
            and digits.isascii()):
        raise EventKeyError(f"event key {sk!r} names no seq")
    return int(digits)


def whole_number(value: Any) -> int | None:
    """The whole number a DynamoDB ``N`` value holds (``{"N": "42"}``), else ``None``.

    Every number convlog writes (seq, ttl, counts) is a non-negative integer in plain
    digits; a table writer's ``{"S": ...}``, ``"1.5"``, ``"1E+40"`` or ``"-3"`` is none.
    """
    text = value.get("N") if isinstance(value, dict) else None
    if not isinstance(text, str) or not (text.isascii() and text.isdigit()) or len(text) > 38:
        return None  # a string, a fraction, an exponent or a sign; DynamoDB keeps 38 digits
    return int(text)


def is_event_sk(sk: str) -> bool:
    """Whether ``sk`` is an event or an event part."""
    return sk.startswith(EVENT_PREFIX)


def part_base(base_sk: str, digest: str) -> str:
    """Where the parts of a payload with this digest live (``<sk>#<digest[:16]>``).

    Parts are addressed by their content, so two writers racing for one seq (or two
    projectors for one snapshot) never overwrite each other's parts with other bytes.
    """
    return f"{base_sk}#{digest[:PART_TAG_CHARS]}"


def is_part_sk(sk: str) -> bool:
    """Whether ``sk`` is an extra part of an event or snapshot."""
    return sk.count("#") >= (2 if sk.startswith(EVENT_PREFIX) else 1)


def user_pk(user_id: str) -> str:
    """Partition key of a user in the ``by_user`` index."""
    return USER_PREFIX + user_id


def tool_pk(tool_name: str, scope: str | None = None) -> str:
    """Partition key of a tool in the tool-result cache (in ``scope``, or global)."""
    return TOOL_PREFIX + (scope + SCOPE_SEPARATOR if scope else "") + tool_name


def split_tool_pk(pk: str) -> tuple[str | None, str]:
    """``(scope, tool name)`` of a tool-cache partition key."""
    scope, sep, name = pk[len(TOOL_PREFIX) :].rpartition(SCOPE_SEPARATOR)
    return (scope if sep else None), name


def cache_ref_sk(pk: str, sk: str) -> str:
    """Sort key, in the owning session's partition, of the record of a cache entry."""
    return CACHE_REF_PREFIX + hashlib.sha256(f"{pk}\n{sk}".encode()).hexdigest()


def args_sk(arguments_hash: str) -> str:
    """Sort key of one argument set in the tool-result cache."""
    return ARGS_PREFIX + arguments_hash
