"""Per-user usage totals, kept by the projector: requests and tokens a user has spent.

Every ``usage_recorded`` event is counted once toward the user who wrote it (the event's
own ``user_id``), in one of ``USAGE_SHARDS`` small items of that user
(``pk = USER#<user id>``, ``sk = USAGE#<shard>``, the shard chosen by the session
partition), so one ``Query`` reads a user's totals whatever the number of sessions.

The projector may deliver anything late or twice, and uses no transaction. So each
shard item also holds, per session partition, the seq of the newest usage event it has
counted (attribute ``s#<partition>``), and the counters move only by one conditional
``UpdateItem``: ``ADD`` the usage of the batch's events *newer than that mark* and
``SET`` the mark, if the mark is still older than the first of them. A replayed or
duplicated batch fails the condition; the old item it gets back (``ALL_OLD``) names the
mark, and only the events past it (often none) are added. The projector writes these
totals before a session's views, so views at seq N mean every usage up to N is counted.

A session ``<tenant>/...`` counts only toward users ``<tenant>/...`` (as in the user
index); other events, and erased ones, are left out. Tokens stay counted when their
turn is later popped, compacted, cleared or branched away, and when the session expires.

Example:
    ```python
    from eventstore.user_usage import read_user_usage

    totals = await read_user_usage(client, "agent_sessions", "alice")
    print(totals.requests, totals.total_tokens)
    ```
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .client import DynamoClient, wrap_client
from .errors import ConditionFailedError, InvalidInputError, StorageError
from .events import USAGE_FIELDS
from .keys import user_index_problem, user_pk, whole_number
from .records import StoredEvent

USAGE_SHARDS = 8
USAGE_SK_PREFIX = "USAGE#"
MARK_PREFIX = "s#"
MAX_ATTEMPTS = 8
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UsageTotals:
    """Requests, input, output and total tokens.

    Example:
        ```python
        totals = await read_user_usage(client, "agent_sessions", "alice")
        print(totals.as_tuple())
        ```
    """

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0

    def as_tuple(self) -> tuple[int, int, int, int]:
        """The four counts in ``USAGE_FIELDS`` order."""
        return (self.requests, self.input_tokens, self.output_tokens, self.total_tokens)


Spent = tuple[int, tuple[int, int, int, int]]
"""One usage event: its seq and its four counts."""


def usage_shard_key(user_id: str, partition: str) -> dict[str, Any]:
    """The key of the shard item that counts ``partition``'s usage for ``user_id``."""
    shard = int(hashlib.sha256(partition.encode("utf-8")).hexdigest()[:8], 16) % USAGE_SHARDS
    return {"pk": {"S": user_pk(user_id)}, "sk": {"S": f"{USAGE_SK_PREFIX}{shard:02d}"}}


def spent_by_user(partition: str, events: Sequence[StoredEvent]) -> dict[str, list[Spent]]:
    """The usage events of ``events`` grouped by the user they count toward, in seq order.

    Events without a user, erased events, and users of another tenant than the
    session's are left out.
    """
    found: dict[str, list[Spent]] = {}
    for stored in events:
        event = stored.event
        if event.type != "usage_recorded" or event.user_id is None or stored.erased:
            continue
        if user_index_problem(event.user_id, partition) is not None:
            continue
        counts = tuple(int(event.usage.get(name, 0) or 0) for name in USAGE_FIELDS)
        found.setdefault(event.user_id, []).append(
            (event.seq, (counts[0], counts[1], counts[2], counts[3])))
    for spent in found.values():
        spent.sort()
    return found


async def add_user_usage(
    db: DynamoClient, table_name: str, user_id: str, partition: str, spent: Sequence[Spent]
) -> int:
    """Count ``spent`` (seq order) toward ``user_id``, each event at most once.

    Returns:
        How many of the events were newly counted (``0``: all were counted before, or
        the shard item is full: DynamoDB refused to grow it past 400 KB; that is logged
        and the events are left uncounted rather than holding up the session's views).
    """
    pending = list(spent)
    for _ in range(MAX_ATTEMPTS):
        if not pending:
            return 0
        sums = [sum(counts[n] for _, counts in pending) for n in range(4)]
        try:
            await db.call(
                "update_item",
                TableName=table_name,
                Key=usage_shard_key(user_id, partition),
                UpdateExpression="SET #m = :hi ADD #r :r, #i :i, #o :o, #t :t",
                ConditionExpression="attribute_not_exists(#m) OR #m < :lo",
                ExpressionAttributeNames={
                    "#m": MARK_PREFIX + partition, "#r": "requests", "#i": "input_tokens",
                    "#o": "output_tokens", "#t": "total_tokens",
                },
                ExpressionAttributeValues={
                    ":lo": {"N": str(pending[0][0])}, ":hi": {"N": str(pending[-1][0])},
                    ":r": {"N": str(sums[0])}, ":i": {"N": str(sums[1])},
                    ":o": {"N": str(sums[2])}, ":t": {"N": str(sums[3])},
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ConditionFailedError as exc:
            mark = int((exc.item or {}).get(MARK_PREFIX + partition, {}).get("N", "0"))
            pending = [s for s in pending if s[0] > mark]  # counted before: a redelivery
            continue
        except StorageError as exc:
            if exc.code != "ValidationException":
                raise
            _log.error("usage of %s not counted for user %s: %s", partition, user_id, exc)
            return 0
        return len(pending)
    raise ConditionFailedError(f"usage of {partition!r} for {user_id!r}: the mark kept moving")


async def read_user_usage(client: Any, table_name: str, user_id: str) -> UsageTotals:
    """A user's usage totals, as the projector has counted them (one ``Query``).

    Raises:
        InvalidInputError: ``user_id`` is not a non-empty string (nothing is read).
    """
    if not isinstance(user_id, str) or not user_id:
        raise InvalidInputError("user_id must be a non-empty string")
    sums = [0, 0, 0, 0]
    async for item in wrap_client(client).items(
        "query",
        TableName=table_name,
        KeyConditionExpression="pk = :u AND begins_with(sk, :s)",
        ExpressionAttributeNames={"#r": "requests", "#i": "input_tokens",
                                  "#o": "output_tokens", "#t": "total_tokens"},
        ExpressionAttributeValues={":u": {"S": user_pk(user_id)},
                                   ":s": {"S": USAGE_SK_PREFIX}},
        ProjectionExpression="#r, #i, #o, #t",
    ):
        counts = _counts(item)
        if counts is None:  # no projector writes it: a table writer's item, not counted
            _log.warning("a usage totals item of user %r holds counts that are not "
                        "whole numbers; it is not counted", user_id)
            continue
        sums = [a + b for a, b in zip(sums, counts, strict=True)]
    return UsageTotals(sums[0], sums[1], sums[2], sums[3])


def _counts(item: Mapping[str, Any]) -> list[int] | None:
    """The four counts of a shard item (absent ones 0); ``None`` unless whole numbers."""
    counts = [whole_number(item.get(name, {"N": "0"})) for name in USAGE_FIELDS]
    return None if None in counts else [c for c in counts if c is not None]


async def forget_usage(
    db: DynamoClient, table_name: str, authors: Mapping[str, Iterable[str]],
    *, user_id: str | None = None,
) -> int:
    """Erase what the totals say of erased sessions (a purge calls it after erasing them).

    Each author's shard item stops naming each session of ``authors`` (its mark goes;
    the counts it added stay, like those of an expired session). With ``user_id``, every
    shard item of that user goes too: after ``purge --user`` no item names the user.
    The tombstones a purge leaves keep the projector from counting the sessions again.

    Returns:
        How many shard items of ``user_id`` were deleted (0 without it).
    """
    for session_id, users in authors.items():
        for author in {u for u in users if u and u != user_id}:
            with contextlib.suppress(ConditionFailedError):  # no such item: nothing named
                await db.call(
                    "update_item", TableName=table_name,
                    Key=usage_shard_key(author, session_id),
                    UpdateExpression="REMOVE #m", ConditionExpression="attribute_exists(pk)",
                    ExpressionAttributeNames={"#m": MARK_PREFIX + session_id},
                )
    if user_id is None:
        return 0
    keys = [{"pk": item["pk"], "sk": item["sk"]} async for item in db.items(
        "query", TableName=table_name, KeyConditionExpression="pk = :u AND begins_with(sk, :s)",
        ExpressionAttributeValues={":u": {"S": user_pk(user_id)}, ":s": {"S": USAGE_SK_PREFIX}},
        ProjectionExpression="pk, sk", ConsistentRead=True)]
    for key in keys:  # at most USAGE_SHARDS
        await db.call("delete_item", TableName=table_name, Key=key)
    return len(keys)
