"""Event models of the log, their canonical form, the payload digest and the hash chain.

Three events change a session: ``items_added``, ``item_popped`` (it records the item it
removed) and ``session_cleared``; advanced sessions add ``items_replaced`` (compaction),
``usage_recorded``, ``branch_created`` and ``branch_deleted``. Each is immutable, carries
a schema version ``v``, and is linked to its predecessor by
``hash = sha256(prev_hash + canonical link)``.

**The payload digest** (defined here, once, for every user): an event's *payload* is
``payload_data(event)`` -- ``{"items": [...]}``, ``{"item": {...}}``, ``{}``, or for the
advanced events every field that is not a header field -- and its
digest is ``payload_digest(data) = sha256(canonical_json(data).encode("utf-8"))`` as
64 lowercase hex digits. ``canonical_json`` is sorted keys, no whitespace, UTF-8 kept
(``ensure_ascii=False``). The digest is stored on the event item (``payload_sha256``),
so the content can be erased (or stored elsewhere, addressed by the digest) while the
chain still verifies.

**Hash schemas.** Events already stored keep verifying under the schema they were
written with:

* ``v = 1``: ``sha256(prev_hash + canonical_json(event_body(event)))`` -- the whole event
  body, payload inline; ``ttl`` is *not* covered.
* ``v = 2`` (written now): ``sha256(prev_hash + canonical_json(link))`` where ``link`` is
  ``{"v", "session_id", "seq", "ts", "user_id", "token", "type", "payload_sha256",
  "ttl"}`` -- everything that changes the meaning of the event, the payload through its
  digest, and the expiry (``null`` when the event never expires).

Example:
    ```python
    from eventstore.events import ItemsAdded, chain_hash, GENESIS_HASH

    event = ItemsAdded(session_id="s", seq=1, ts="2026-01-01T00:00:00.000Z", token="t",
                       items=[{"role": "user", "content": "hi"}])
    digest = chain_hash(GENESIS_HASH, event, ttl=None)
    ```
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from .errors import CorruptEventError, InvalidItemError

SCHEMA_VERSION: Literal[2] = 2
SCHEMA_VERSIONS = (1, 2)
GENESIS_HASH = "0" * 64
MAX_NESTING = 255
"""Items may nest dicts and lists at most this deep (the item itself is level 1)."""

JsonItem = dict[str, Any]


class _EventBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1, 2] = SCHEMA_VERSION
    session_id: str
    seq: int = Field(ge=1)
    ts: str
    user_id: str | None = None
    token: str


class ItemsAdded(_EventBase):
    """Items appended to the conversation, oldest first."""

    type: Literal["items_added"] = "items_added"
    items: list[JsonItem]


class ItemPopped(_EventBase):
    """The most recent item was removed; ``item`` is what was removed."""

    type: Literal["item_popped"] = "item_popped"
    item: JsonItem


class SessionCleared(_EventBase):
    """Every item before this event is gone from the conversation."""

    type: Literal["session_cleared"] = "session_cleared"


class ItemsReplaced(_EventBase):
    """Compaction: the newest ``replaced`` items (all when ``None``) became ``items``."""

    type: Literal["items_replaced"] = "items_replaced"
    replaced: int | None = Field(default=None, ge=1)
    items: list[JsonItem]


USAGE_FIELDS = ("requests", "input_tokens", "output_tokens", "total_tokens")


class UsageRecorded(_EventBase):
    """A run's token usage (``USAGE_FIELDS`` and token details) for user turn ``turn``."""

    type: Literal["usage_recorded"] = "usage_recorded"
    turn: int = Field(ge=1)
    usage: dict[str, Any]


class BranchCreated(_EventBase):
    """First event of a branch: it starts with the first ``keep`` items of its parent.

    The parent is the partition ``parent_session`` as it stood at ``parent_seq``
    (whose hash was ``parent_hash``); nothing is copied.
    """

    type: Literal["branch_created"] = "branch_created"
    branch_id: str
    parent_session: str
    parent_seq: int = Field(ge=0)
    parent_hash: str
    keep: int = Field(ge=0)
    from_turn: int = Field(ge=1)


class BranchDeleted(_EventBase):
    """The branch was deleted: its items are gone from reads (its events stay)."""

    type: Literal["branch_deleted"] = "branch_deleted"
    branch_id: str


Event = Annotated[
    ItemsAdded | ItemPopped | SessionCleared | ItemsReplaced | UsageRecorded | BranchCreated
    | BranchDeleted,
    Field(discriminator="type"),
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
EVENT_TYPES = (
    "items_added", "item_popped", "session_cleared", "items_replaced", "usage_recorded",
    "branch_created", "branch_deleted",
)
BASE_FIELDS = frozenset({"v", "session_id", "seq", "ts", "user_id", "token", "type"})


def now_iso() -> str:
    """Return the current UTC time as ISO 8601 with milliseconds and a ``Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def canonical_json(value: Any) -> str:
    """Serialise ``value`` deterministically (sorted keys, no spaces, UTF-8 kept)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def event_body(event: Event) -> dict[str, Any]:
    """Return the JSON form of an event, as hashed and exported."""
    return event.model_dump(mode="json")


def payload_data(event: Event) -> dict[str, Any]:
    """The payload of an event: what is not one of its header fields."""
    if event.type == "items_added":
        return {"items": event.items}
    if event.type == "item_popped":
        return {"item": event.item}
    if event.type == "session_cleared":
        return {}
    # the advanced events: every field of their own is payload
    return {k: v for k, v in event.model_dump(mode="json").items() if k not in BASE_FIELDS}


def payload_digest(data: Any) -> str:
    """Return the payload digest: sha256 (hex) of the canonical JSON of ``data``."""
    return hashlib.sha256(canonical_json(data).encode("utf-8")).hexdigest()


def event_header(event: Event) -> dict[str, Any]:
    """The header fields of an event (its body without the payload)."""
    body = event_body(event)
    for name in payload_data(event):
        body.pop(name, None)
    return body


def link_hash(
    prev_hash: str, header: dict[str, Any], payload_sha256: str, ttl: int | None
) -> str:
    """Return the schema-2 link hash from the header fields, payload digest and ``ttl``.

    This is what a verifier computes when it only has the stored digest of the payload
    (an erased or externally stored payload).
    """
    link = {**header, "payload_sha256": payload_sha256, "ttl": ttl}
    return hashlib.sha256((prev_hash + canonical_json(link)).encode("utf-8")).hexdigest()


def chain_hash(
    prev_hash: str, event: Event, ttl: int | None = None, *, payload_sha256: str | None = None
) -> str:
    """Return the hash that links ``event`` (stored with ``ttl``) to ``prev_hash``.

    Args:
        prev_hash: The previous event's hash (``GENESIS_HASH`` for seq 1).
        event: The event; its ``v`` picks the hash schema.
        ttl: The event's stored expiry (schema 2 covers it; schema 1 ignores it).
        payload_sha256: The payload digest if already known (else computed).
    """
    if event.v == 1:
        data = (prev_hash + canonical_json(event_body(event))).encode("utf-8")
        return hashlib.sha256(data).hexdigest()
    digest = payload_sha256 or payload_digest(payload_data(event))
    return link_hash(prev_hash, event_header(event), digest, ttl)


def parse_event(data: Mapping[str, Any]) -> Event:
    """Validate a JSON-shaped event (e.g. one line of a ``jsonl`` export).

    Raises:
        CorruptEventError: Unknown type, unknown schema version or missing fields.
    """
    try:
        return EVENT_ADAPTER.validate_python(dict(data))
    except ValidationError as exc:
        where = f"session {data.get('session_id')!r} seq {data.get('seq')!r}"
        raise CorruptEventError(f"event at {where} is not valid: {exc}") from exc


def validate_items(items: Sequence[Any]) -> list[JsonItem]:
    """Check that every item is a JSON object that survives a round trip.

    Args:
        items: The items given to ``add_items``.

    Returns:
        The items as plain dictionaries.

    Raises:
        InvalidItemError: An item is not a dict, or holds a value JSON cannot carry
            (bytes, sets, objects, mappings other than dict, NaN or infinity, non-string
            keys, lone surrogates, an int beyond Python's int/str conversion limit), or
            nests deeper than ``MAX_NESTING``.
    """
    if isinstance(items, str | bytes | Mapping) or not isinstance(items, Sequence):
        raise InvalidItemError(f"add_items needs a list of items, got {type(items).__name__}")
    checked: list[JsonItem] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidItemError(
                f"item {index} is a {type(item).__name__}, expected a JSON object (dict)"
            )
        problem = _json_problem(item, f"item {index}", 1)
        if problem:
            raise InvalidItemError(problem)
        checked.append(dict(item))
    return checked


def _json_problem(value: Any, path: str, depth: int) -> str | None:
    if isinstance(value, str):
        return _text_problem(value, path)
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return _int_problem(value, path)
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{path} is {value}, which JSON cannot hold"
    if isinstance(value, dict | list | tuple) and depth > MAX_NESTING:
        return f"{path} nests deeper than {MAX_NESTING} levels"
    if isinstance(value, dict):
        for key, inner in value.items():
            if not isinstance(key, str):
                return f"{path} has a non-string key {key!r}"
            problem = _text_problem(key, f"{path} key") or _json_problem(
                inner, f"{path}[{key!r}]", depth + 1
            )
            if problem:
                return problem
        return None
    if isinstance(value, list | tuple):
        for index, inner in enumerate(value):
            problem = _json_problem(inner, f"{path}[{index}]", depth + 1)
            if problem:
                return problem
        return None
    if isinstance(value, Mapping):
        return f"{path} is a {type(value).__name__}; only dict is a JSON object (use dict(...))"
    return f"{path} is a {type(value).__name__}, which is not JSON-serialisable"


def _int_problem(value: int, path: str) -> str | None:
    """An int JSON can write and read back: within Python's int/str conversion limit."""
    limit = sys.get_int_max_str_digits()
    if limit and value.bit_length() > 3 * limit:  # > ~0.9 * limit digits: check exactly
        try:
            str(value)
        except ValueError:
            return (f"{path} is an int of more than {limit} digits, beyond Python's "
                    "int/str conversion limit (sys.set_int_max_str_digits)")
    return None


def _text_problem(text: str, path: str) -> str | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"{path} holds a lone surrogate ({exc.reason}), which UTF-8 cannot store"
    return None
