"""The key layout of the convlog table.

| item | ``pk`` | ``sk`` |
|---|---|---|
| event | ``SESSION#<id>`` | ``EVENT#<seq, 12 digits>`` (parts: ``...#<digest16>#0001``) |
| session meta | ``SESSION#<id>`` | ``META`` |
| snapshot | ``SESSION#<id>`` | ``SNAPSHOT`` (parts: ``SNAPSHOT#<digest16>#0001``) |
| tool cache | ``TOOL#<name>`` | ``ARGS#<sha256>`` |

``EVENT#`` < ``META`` < ``SNAPSHOT``, so a newest-first ``Query`` on a session partition
returns the snapshot, then the meta item, then the newest events.

Example:
    ```python
    from eventstore.keys import session_pk, event_sk

    key = {"pk": {"S": session_pk("user-123")}, "sk": {"S": event_sk(7)}}
    ```
"""

from __future__ import annotations

from .errors import InvalidSessionIdError

SESSION_PREFIX = "SESSION#"
EVENT_PREFIX = "EVENT#"
META_SK = "META"
SNAPSHOT_SK = "SNAPSHOT"
TOOL_PREFIX = "TOOL#"
ARGS_PREFIX = "ARGS#"
USER_PREFIX = "USER#"
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
    """Sequence number of an event (or event part) sort key."""
    return int(sk[len(EVENT_PREFIX) : len(EVENT_PREFIX) + SEQ_DIGITS])


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


def tool_pk(tool_name: str) -> str:
    """Partition key of a tool in the tool-result cache."""
    return TOOL_PREFIX + tool_name


def args_sk(arguments_hash: str) -> str:
    """Sort key of one argument set in the tool-result cache."""
    return ARGS_PREFIX + arguments_hash
