"""Tool-cache entries: their item codec, their owner records, and the projector's write.

An entry lives at ``pk = TOOL#[<scope>/]<tool>``, ``sk = ARGS#<sha256>``; a scope is a
tenant (``acme``) or an application's name, and the global scope has no prefix. An entry
that came from a session names its owner (``session``, ``user``), and the session's
partition holds a small record of it (``sk = CACHE#<sha256 of the entry key>``, with
``ref_pk`` / ``ref_sk``) so that erasing the session finds its entries without a scan.

Invalidation leaves marks that no older result can pass: ``invalidate(tool, args)``
replaces the entry with a content-free tombstone whose ``created`` is the time of the
invalidation, and ``invalidate(tool)`` writes ``sk = INVALIDATED`` with that time
(``at``) in the tool's partition. Both expire after ``MARK_TTL_SECONDS`` (the stream
keeps records for 24 hours). Entries are written by ``eventstore.cache_commit`` (staged,
checked against the tool's mark and the session's purge tombstone, then committed; no
transaction), so neither is ever undone.

Example:
    ```python
    from eventstore.tool_entries import ToolCacheEntry, decode_tool_entry, owner_record

    entry = decode_tool_entry(item)
    record = owner_record(entry)  # in the session's partition, where erasure finds it
    ```
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import CorruptEventError, InvalidInputError
from .events import canonical_json
from .keys import args_sk, cache_ref_sk, session_pk, split_tool_pk, tool_pk
from .records import AttrMap

MAX_TOOL_OUTPUT_BYTES = 300_000
MARK_TTL_SECONDS = 25 * 3600  # longer than the stream's 24 h retention


@dataclass(frozen=True)
class ToolCacheEntry:
    """One cached tool result (``pk = TOOL#[<scope>/]<name>``, ``sk = ARGS#<sha256>``).

    Example:
        ```python
        entry = await ToolCache(client, "agent_sessions").get("add", {"a": 1})
        if entry is not None:
            print(entry.output, entry.hits, entry.session_id, entry.user_id)
        ```
    """

    tool_name: str
    arguments_hash: str
    output: Any
    created: str
    ttl: int | None = None
    session_id: str | None = None
    call_id: str | None = None
    hits: int = 0
    scope: str | None = None
    user_id: str | None = None

    @property
    def key(self) -> dict[str, Any]:
        """The entry's primary key."""
        return {"pk": {"S": tool_pk(self.tool_name, self.scope)},
                "sk": {"S": args_sk(self.arguments_hash)}}


def canonical_arguments(arguments: Mapping[str, Any] | str) -> str:
    """Return the canonical JSON of tool arguments (sorted keys, no whitespace).

    Raises:
        InvalidInputError: ``arguments`` is neither a mapping nor a JSON string.
    """
    if isinstance(arguments, str):
        try:
            value: Any = json.loads(arguments) if arguments.strip() else {}
        except ValueError as exc:
            raise InvalidInputError(f"tool arguments are not valid JSON: {exc}") from exc
    elif isinstance(arguments, Mapping):
        value = dict(arguments)
    else:
        raise InvalidInputError(
            f"tool arguments must be a dict or a JSON string, got {type(arguments).__name__}"
        )
    try:
        return canonical_json(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"tool arguments are not JSON-serialisable: {exc}") from exc


def arguments_hash(arguments: Mapping[str, Any] | str) -> str:
    """Return the sha256 (hex) of the canonical JSON of tool arguments."""
    return hashlib.sha256(canonical_arguments(arguments).encode("utf-8")).hexdigest()


def encode_tool_entry(entry: ToolCacheEntry) -> AttrMap:
    """Return the item of a tool-cache entry."""
    item: AttrMap = {
        **entry.key,
        "output": {"S": canonical_json(entry.output)},
        "created": {"S": entry.created},
        "hits": {"N": str(entry.hits)},
    }
    if entry.ttl is not None:
        item["ttl"] = {"N": str(entry.ttl)}
    if entry.session_id is not None:
        item["session"] = {"S": entry.session_id}
    if entry.user_id is not None:
        item["user"] = {"S": entry.user_id}
    if entry.call_id is not None:
        item["call_id"] = {"S": entry.call_id}
    return item


def decode_tool_entry(item: AttrMap) -> ToolCacheEntry:
    """Rebuild a ``ToolCacheEntry`` from its item.

    Raises:
        CorruptEventError: The item is malformed, an invalidation tombstone, or an entry
            staged and not committed yet (``pending``, see ``eventstore.cache_commit``).
    """
    if "pending" in item:
        raise CorruptEventError("tool cache item is staged, not committed")
    try:
        scope, name = split_tool_pk(item["pk"]["S"])
        return ToolCacheEntry(
            tool_name=name,
            arguments_hash=item["sk"]["S"].split("#", 1)[1],
            output=json.loads(item["output"]["S"]),
            created=item["created"]["S"],
            ttl=int(item["ttl"]["N"]) if "ttl" in item else None,
            session_id=item["session"]["S"] if "session" in item else None,
            call_id=item["call_id"]["S"] if "call_id" in item else None,
            hits=int(item.get("hits", {}).get("N", "0")),
            scope=scope,
            user_id=item["user"]["S"] if "user" in item else None,
        )
    except (KeyError, ValueError, IndexError) as exc:
        raise CorruptEventError(f"tool cache item is malformed: {exc!r}") from exc


def owner_record(entry: ToolCacheEntry) -> AttrMap | None:
    """The record of ``entry`` in its session's partition (``None`` without an owner)."""
    if entry.session_id is None:
        return None
    key = entry.key
    item: AttrMap = {
        "pk": {"S": session_pk(entry.session_id)},
        "sk": {"S": cache_ref_sk(key["pk"]["S"], key["sk"]["S"])},
        "ref_pk": key["pk"],
        "ref_sk": key["sk"],
    }
    if entry.user_id is not None:
        item["user_id"] = {"S": entry.user_id}
    if entry.ttl is not None:
        item["ttl"] = {"N": str(entry.ttl)}
    return item


def tool_output_fits(output: Any) -> bool:
    """Whether a tool output is small enough to cache in one item."""
    try:
        return len(canonical_json(output).encode("utf-8")) <= MAX_TOOL_OUTPUT_BYTES
    except (TypeError, ValueError):
        return False
