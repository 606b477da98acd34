"""The tool-result cache: reuse the output of a tool called with the same arguments.

Entries live in the convlog table at ``pk = TOOL#[<scope>/]<tool name>``,
``sk = ARGS#<sha256 of the canonical arguments>`` (key order and whitespace do not
matter). A ``ToolCache`` reads and writes one scope: the global one (``scope=None``) or a
named one (a tenant, an application). They come from two places: the projector, which
pairs every ``function_call_output`` of a session with its ``function_call`` and writes
it into the scope of that session (its tenant prefix ``<tenant>/...``, else global); and
``cached_tool``, which stores what a wrapped tool returned. Every entry written during a
session's run names that session and user as its owner (``eventstore.ownership``), so
erasing the session removes it. A lookup is one ``UpdateItem`` that adds 1 to ``hits``
only if the entry exists, holds a result and is alive, so the counter is exact under
concurrency and an expired entry (``ttl`` in the past, even before DynamoDB deletes it)
or an invalidated one is a miss. Invalidations leave marks that no result produced
before them can pass (see ``eventstore.tool_entries``).

Example:
    ```python
    from agents import Agent, function_tool
    from eventstore import ToolCache, cached_tool

    cache = ToolCache(client, "agent_sessions", scope="acme")  # tenant acme's entries

    @cached_tool(cache, ttl_seconds=600)
    @function_tool
    async def get_weather(city: str) -> str:
        return await fetch_weather(city)

    agent = Agent(name="assistant", tools=[get_weather])
    entry = await cache.get("get_weather", {"city": "Paris"})
    await cache.invalidate("get_weather")  # every entry of the tool
    ```
"""

from __future__ import annotations

import copy
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from .cache_commit import PENDING, batch_write, write_tool_entries
from .client import DynamoClient, wrap_client
from .errors import ConditionFailedError, ConvlogError, CorruptEventError, InvalidInputError
from .keys import INVALIDATED_SK, args_sk, tool_pk, validate_scope, validate_tool_name
from .ownership import current_owner
from .tool_entries import (
    MARK_TTL_SECONDS,
    ToolCacheEntry,
    arguments_hash,
    decode_tool_entry,
    tool_output_fits,
)

LOG = logging.getLogger("convlog.toolcache")
DEFAULT_TTL_SECONDS = 3600
MAX_HITS = 10**18  # a hit counter above it is a table writer's: a miss, never an overflow
Arguments = Mapping[str, Any] | str


class ToolCache:
    """Cached tool results in the convlog table.

    Args:
        client: A boto3 or aiobotocore DynamoDB client.
        table_name: The convlog table.
        scope: Whose entries: ``None`` for the global scope, else a tenant or an
            application name (no ``/``). The projector fills scope ``acme`` from sessions
            ``acme/...`` only, and the global scope from sessions without a prefix.
        default_ttl_seconds: Lifetime of entries written by ``put`` without a TTL.
        clock: Epoch-seconds clock (tests pass a fake one).

    Raises:
        InvalidInputError: Bad table name, scope or TTL (nothing is read).

    Example:
        ```python
        cache = ToolCache(client, "agent_sessions", scope="acme")
        await cache.put("add", {"a": 1, "b": 2}, "3", ttl_seconds=60)
        hit = await cache.get("add", '{"b": 2, "a": 1}')
        assert hit is not None and hit.output == "3"
        ```
    """

    def __init__(
        self,
        client: Any,
        table_name: str,
        *,
        scope: str | None = None,
        default_ttl_seconds: int = DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(table_name, str) or not table_name:
            raise InvalidInputError("table_name must be a non-empty string")
        _check_ttl(default_ttl_seconds)
        self.scope = validate_scope(scope)
        self.db: DynamoClient = wrap_client(client)
        self.table_name = table_name
        self.default_ttl_seconds = default_ttl_seconds
        self.clock = clock

    async def get(
        self, tool_name: str, arguments: Arguments, *, max_age_seconds: int | None = None
    ) -> ToolCacheEntry | None:
        """Return the live entry for these arguments and count the hit, or ``None``.

        Args:
            tool_name: The tool's name.
            arguments: A dict or a JSON string of the arguments.
            max_age_seconds: Also treat entries created longer ago than this as misses.

        Returns:
            The entry, or ``None`` on a miss: none, expired, staged, too old, or one no
            writer makes (a table writer's malformed item).

        Raises:
            InvalidInputError: Bad tool name or arguments (nothing is read).
        """
        key = self._key(tool_name, arguments)
        now = self.clock()
        # a table writer's entry whose ttl, hits or created has the wrong type is a miss
        # (the type checks come first: a comparison across types is no match)
        condition = ("attribute_exists(pk) AND attribute_exists(#o) "
                     "AND attribute_not_exists(#p) "
                     "AND (attribute_not_exists(#t) OR (attribute_type(#t, :n) AND #t > :now)) "
                     "AND (attribute_not_exists(#h) OR (attribute_type(#h, :n) AND #h < :cap))")
        values: dict[str, Any] = {":one": {"N": "1"}, ":now": {"N": str(int(now))},
                                  ":n": {"S": "N"}, ":cap": {"N": str(MAX_HITS)}}
        names = {"#t": "ttl", "#h": "hits", "#o": "output", "#p": PENDING}
        if max_age_seconds is not None:
            condition += " AND attribute_type(#c, :s) AND #c >= :oldest"
            values[":s"] = {"S": "S"}
            values[":oldest"] = {"S": _iso(now - max_age_seconds)}
            names["#c"] = "created"
        try:
            response = await self.db.call(
                "update_item",
                TableName=self.table_name,
                Key=key,
                UpdateExpression="ADD #h :one",
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except ConditionFailedError:
            return None
        try:
            return decode_tool_entry(response["Attributes"])
        except CorruptEventError:  # no writer makes it (a table writer can): a miss
            LOG.warning("tool cache entry of %s is malformed; a miss", tool_name)
            return None

    async def put(
        self,
        tool_name: str,
        arguments: Arguments,
        output: Any,
        *,
        ttl_seconds: int | None = None,
        session_id: str | None = None,
        call_id: str | None = None,
        user_id: str | None = None,
        produced_at: float | None = None,
    ) -> ToolCacheEntry:
        """Store (or replace) the output of ``tool_name`` for ``arguments``.

        The entry's owner is ``session_id`` / ``user_id``, else the session of the
        current run (``eventstore.ownership``); an owned entry is also recorded in the
        session's partition, where erasure finds it. The write is staged, checked and
        committed like the projector's (``eventstore.cache_commit``): 3 requests, 4 with
        an owner.

        Args:
            tool_name: The tool's name (no ``/``).
            arguments: A dict or a JSON string of the arguments.
            output: A JSON-serialisable result of at most 300 KB.
            ttl_seconds: Lifetime (default: the cache's).
            session_id: Owner session (default: the current run's).
            call_id: The tool call's id.
            user_id: Owner user (default: the current run's).
            produced_at: When the result was computed (default: now); an invalidation
                of this entry at or after that time is not overwritten.

        Raises:
            InvalidInputError: Bad name, arguments or TTL, or an output that is not JSON
                or too large for one item (nothing is written).
        """
        key = self._key(tool_name, arguments)
        ttl = _check_ttl(self.default_ttl_seconds if ttl_seconds is None else ttl_seconds)
        if not tool_output_fits(output):
            raise InvalidInputError(
                f"output of {tool_name!r} is not JSON-serialisable or larger than one item"
            )
        now = self.clock() if produced_at is None else produced_at
        owner = current_owner()
        if session_id is None and owner is not None:
            session_id, user_id = owner.session_id, user_id or owner.user_id
        entry = ToolCacheEntry(
            tool_name=tool_name,
            arguments_hash=key["sk"]["S"].split("#", 1)[1],
            output=output,
            created=_iso(now),
            ttl=int(now) + ttl,
            session_id=session_id,
            call_id=call_id,
            scope=self.scope,
            user_id=user_id,
        )
        # staged with its owner record, checked, committed (no transaction): a later
        # invalidation, a newer result or a purge of the owner leaves nothing to serve
        await write_tool_entries(self.db, self.table_name, [entry], batch_reads=False)
        return entry

    async def invalidate(self, tool_name: str, arguments: Arguments | None = None) -> int:
        """Drop the entry for ``arguments``, or every entry of the tool (``None``).

        A result produced before the invalidation is never served again, even when a
        lagging or replayed stream delivers it later: one entry is replaced by a
        content-free tombstone dated now; a whole tool gets an ``INVALIDATED`` mark dated
        now, then its entries are deleted. Marks expire after 25 hours.

        Returns:
            How many entries holding a result were dropped.
        """
        now = self.clock()
        if arguments is not None:
            key = self._key(tool_name, arguments)
            response = await self.db.call(
                "put_item", TableName=self.table_name, ReturnValues="ALL_OLD",
                Item={**key, "created": {"S": _iso(now)}, "invalidated": {"BOOL": True},
                      "ttl": {"N": str(int(now) + MARK_TTL_SECONDS)}},
            )
            return 1 if "output" in response.get("Attributes", {}) else 0
        pk = tool_pk(validate_tool_name(tool_name, self.scope), self.scope)
        await self.db.call("put_item", TableName=self.table_name, Item={
            "pk": {"S": pk}, "sk": {"S": INVALIDATED_SK}, "at": {"S": _iso(now)},
            "ttl": {"N": str(int(now) + MARK_TTL_SECONDS)},
        })
        keys: list[dict[str, Any]] = []
        live = 0
        async for row in self.db.items(
            "query",
            TableName=self.table_name,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :a)",
            ExpressionAttributeValues={":pk": {"S": pk}, ":a": {"S": args_sk("")}},
            ProjectionExpression="pk, sk, #o",
            ExpressionAttributeNames={"#o": "output"},
            ConsistentRead=True,
        ):
            keys.append({"pk": row["pk"], "sk": row["sk"]})
            live += "output" in row
        for i in range(0, len(keys), 25):
            await batch_write(self.db, self.table_name,
                              [{"DeleteRequest": {"Key": k}} for k in keys[i : i + 25]])
        return live

    def _key(self, tool_name: str, arguments: Arguments) -> dict[str, Any]:
        validate_tool_name(tool_name, self.scope)
        return {"pk": {"S": tool_pk(tool_name, self.scope)},
                "sk": {"S": args_sk(arguments_hash(arguments))}}


def cached_tool(cache: ToolCache, *, ttl_seconds: int | None = None) -> Callable[[Any], Any]:
    """Make an Agents SDK ``FunctionTool`` consult ``cache`` before it runs.

    On a hit the stored output is returned and the tool body does not run; on a miss
    the tool runs and a successful result is stored for ``ttl_seconds`` (errors are not
    cached). Entries older than ``ttl_seconds`` are misses even if another writer gave
    them a longer life. A failing cache never fails the tool: it is logged and skipped.

    Args:
        cache: The cache.
        ttl_seconds: Lifetime of this tool's results (default: the cache's default).

    Returns:
        A decorator taking a ``FunctionTool`` and returning a cached copy of it.

    Example:
        ```python
        weather = cached_tool(cache, ttl_seconds=300)(function_tool(get_weather))
        ```
    """
    ttl = _check_ttl(cache.default_ttl_seconds if ttl_seconds is None else ttl_seconds)

    def decorate(tool: Any) -> Any:
        from agents import FunctionTool

        if not isinstance(tool, FunctionTool):
            raise InvalidInputError(
                f"cached_tool wraps an agents.FunctionTool, got {type(tool).__name__}"
            )
        name = tool.name
        invoker: Any = tool.on_invoke_tool
        inner = getattr(invoker, "_invoke_tool_impl", None)
        bind = getattr(invoker, "__agents_bind_function_tool__", None)
        wrapped = copy.copy(tool)
        if inner is not None and callable(bind):
            # Wrap the body inside the SDK's failure handler, so errors are not cached.
            new_invoker: Any = copy.copy(invoker)
            new_invoker._invoke_tool_impl = _caching(cache, name, ttl, inner)
            new_invoker._function_tool = None
            wrapped.on_invoke_tool = new_invoker.__agents_bind_function_tool__(wrapped)
        else:
            wrapped.on_invoke_tool = _caching(cache, name, ttl, invoker)
        return wrapped

    return decorate


def _caching(
    cache: ToolCache, name: str, ttl: int, run: Callable[[Any, str], Awaitable[Any]]
) -> Callable[[Any, str], Awaitable[Any]]:
    @functools.wraps(run)
    async def invoke(ctx: Any, input_json: str) -> Any:
        try:
            hit = await cache.get(name, input_json or "{}", max_age_seconds=ttl)
        except InvalidInputError:
            return await run(ctx, input_json)
        except ConvlogError as exc:
            LOG.warning("tool cache lookup for %s failed, running the tool: %s", name, exc)
            hit = None
        if hit is not None:
            return hit.output
        started = cache.clock()
        result = await run(ctx, input_json)
        if tool_output_fits(result):
            try:
                await cache.put(name, input_json or "{}", result, ttl_seconds=ttl,
                                call_id=getattr(ctx, "tool_call_id", None),
                                produced_at=started)
            except ConvlogError as exc:
                LOG.warning("could not cache the result of %s: %s", name, exc)
        return result

    return invoke


def _check_ttl(ttl: Any) -> int:
    if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0:
        raise InvalidInputError(f"ttl_seconds must be a positive int, got {ttl!r}")
    return ttl


def _iso(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
