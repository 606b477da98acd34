"""Per-user usage totals kept by the projector: counted once, whatever is redelivered.

The projector keeps, per user, small ``USER#<user>`` / ``USAGE#<shard>`` items; a
replayed batch, a batch holding the same record twice, a late batch and a rebuild from
seq 1 never count a usage event twice. ``list_sessions`` (first page) and ``convlog
usage`` read these items instead of summing sessions.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from agents.usage import Usage

from convlog.local import EmbeddedEndpoint
from convlog.rebuild import rebuild_session
from eventstore import DynamoDBSession, list_sessions
from eventstore.events import UsageRecorded
from eventstore.log import EventLog
from eventstore.records import StoredEvent
from eventstore.user_usage import UsageTotals, read_user_usage
from stream_handlers.projector import build_handler
from tests.conftest import RequestCounter
from tests.integration.cli_helpers import cli
from tests.integration.projection_support import (
    History,
    insert_records,
    make_pump,
    put_events,
    stream_records,
    ts_of,
)


def result(requests: int, tokens_in: int, tokens_out: int) -> Any:
    usage = Usage(requests=requests, input_tokens=tokens_in, output_tokens=tokens_out,
                  total_tokens=tokens_in + tokens_out)
    return SimpleNamespace(context_wrapper=SimpleNamespace(usage=usage))


async def spend(client: Any, table: str, session_id: str, user: str, runs: int) -> None:
    session = DynamoDBSession(session_id, client, table, user_id=user)
    for n in range(runs):
        await session.add_items([{"role": "user", "content": f"q{n}"}])
        await session.store_run_usage(result(1, 10, 2))


def usage_event(history: History, n: int, usage: tuple[int, int]) -> StoredEvent:
    """A ``usage_recorded`` event built like ``History.build`` builds the others."""
    from eventstore.events import chain_hash

    history.seq += 1
    event = UsageRecorded(
        session_id=history.session_id, seq=history.seq, ts=ts_of(n), user_id=history.user_id,
        token=f"u-{history.seq}", turn=1,
        usage={"requests": 1, "input_tokens": usage[0], "output_tokens": usage[1],
               "total_tokens": sum(usage)},
    )
    digest = chain_hash(history.head_hash, event, None)
    stored = StoredEvent(event, history.head_hash, digest, None)
    history.head_hash = digest
    return stored


async def test_the_projector_keeps_per_user_totals(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str
) -> None:
    await spend(boto3_client, table, "a1", "ann", 3)
    await spend(boto3_client, table, "a2", "ann", 2)
    await spend(boto3_client, table, "b1", "bob", 1)
    make_pump(endpoint, table).drain()
    assert await read_user_usage(boto3_client, table, "ann") == UsageTotals(5, 50, 10, 60)
    assert await read_user_usage(boto3_client, table, "bob") == UsageTotals(1, 10, 2, 12)
    assert await read_user_usage(boto3_client, table, "carol") == UsageTotals()


async def test_redelivered_duplicated_and_late_batches_count_once(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str
) -> None:
    history = History("dup", user_id="ann")
    events = [history.build(("add", [{"role": "user", "content": "q"}]), ts_of(1)),
              usage_event(history, 2, (100, 10)),
              history.build(("add", [{"role": "user", "content": "q2"}]), ts_of(3)),
              usage_event(history, 4, (200, 20)),
              usage_event(history, 5, (300, 30))]
    put_events(boto3_client, table, events)
    handler = build_handler(endpoint.client("dynamodb"), table)
    records = insert_records(events)
    expected = UsageTotals(3, 600, 60, 660)
    # the same record twice in one batch, then the whole batch again, then an old one late
    assert handler({"Records": records[:2] + records[1:3]}, None) == {"batchItemFailures": []}
    assert handler({"Records": records}, None) == {"batchItemFailures": []}
    assert handler({"Records": records[:2]}, None) == {"batchItemFailures": []}
    assert await read_user_usage(boto3_client, table, "ann") == expected
    # the views lost (say their write failed after the totals'): a replay from seq 1
    await rebuild_session(EventLog(boto3_client, table), "dup", handler, reset=True)
    assert await read_user_usage(boto3_client, table, "ann") == expected
    # the stream's own records, delivered once more
    make_pump(endpoint, table).drain()
    for record in stream_records(endpoint, table):
        handler({"Records": [record]}, None)
    assert await read_user_usage(boto3_client, table, "ann") == expected


async def test_the_totals_are_tenant_bound(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str
) -> None:
    # written straight to the table: DynamoDBSession itself refuses such a user
    history = History("t1/chat", user_id="t2/mallory")
    events = [history.build(("add", [{"role": "user", "content": "q"}]), ts_of(1)),
              usage_event(history, 2, (100, 10))]
    put_events(boto3_client, table, events)
    await spend(boto3_client, table, "t1/own", "t1/ann", 1)
    make_pump(endpoint, table).drain()
    assert await read_user_usage(boto3_client, table, "t2/mallory") == UsageTotals()
    assert await read_user_usage(boto3_client, table, "t1/ann") == UsageTotals(1, 10, 2, 12)


async def test_the_projector_pays_one_update_per_user_and_batch_with_usage(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str
) -> None:
    await spend(boto3_client, table, "c1", "ann", 3)  # 3 usage events in one session
    await DynamoDBSession("c2", boto3_client, table, user_id="ann").add_items(
        [{"role": "user", "content": "no usage"}])
    projector = endpoint.client("dynamodb")
    counter = RequestCounter(projector)
    make_pump(endpoint, table, handler_client=projector).drain()
    assert counter.counts["UpdateItem"] == 1  # c1's three usage events at once; c2: none


async def test_list_sessions_and_reads_of_the_totals_cost_one_query(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, counter: RequestCounter
) -> None:
    await asyncio.gather(*(spend(boto3_client, table, f"s{n}", "ann", 1) for n in range(3)))
    make_pump(endpoint, table).drain()
    counter.reset()
    assert await read_user_usage(boto3_client, table, "ann") == UsageTotals(3, 30, 6, 36)
    assert counter.counts == {"Query": 1}
    counter.reset()
    first = await list_sessions(boto3_client, table, "ann", limit=2)
    assert counter.counts == {"Query": 2}  # the index page and the totals, sent together
    assert first.user_usage == UsageTotals(3, 30, 6, 36)
    counter.reset()
    assert first.cursor is not None
    second = await list_sessions(boto3_client, table, "ann", limit=2, cursor=first.cursor)
    assert counter.counts == {"Query": 1} and second.user_usage is None


def test_convlog_usage_totals_come_from_the_user_item(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    asyncio.run(spend(boto3_client, table, "gone", "ann", 2))
    asyncio.run(spend(boto3_client, table, "kept", "ann", 1))
    make_pump(endpoint, table).drain()
    # the session's views are gone (expired, say): its tokens were still spent
    boto3_client.delete_item(TableName=table, Key={"pk": {"S": "SESSION#gone"},
                                                   "sk": {"S": "META"}})
    shown = cli(capsys, endpoint, table, "usage", "--user", "ann")
    assert shown.code == 0
    rows = {line.split()[0]: line.split()[1:] for line in shown.out.splitlines()
            if line.split() and line.split()[0] in ("kept", "gone", "TOTAL")}
    assert rows == {"kept": ["main", "1", "10", "2", "12"], "TOTAL": ["3", "30", "6", "36"]}


async def test_a_full_shard_item_is_logged_not_a_blocked_session(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from eventstore.errors import StorageError
    from eventstore.user_usage import add_user_usage

    class FullItem:  # fault injection: DynamoDB refuses to grow the item past 400 KB
        async def call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
            raise StorageError("update_item: ValidationException: Item size has exceeded "
                               "the maximum allowed size", code="ValidationException")

    assert await add_user_usage(FullItem(), "t", "ann", "s1", [(2, (1, 1, 1, 2))]) == 0  # type: ignore[arg-type]
    assert "usage of s1 not counted for user ann" in caplog.text


async def test_a_purge_erases_what_the_totals_say_of_the_purged(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str
) -> None:
    """Issue 11 with 15: after ``purge --session`` no totals item names the session; after
    ``purge --user`` no totals item of the user is left (bob keeps his counts)."""
    from convlog.purge import execute_purge, plan_purge
    from eventstore.client import wrap_client

    await spend(boto3_client, table, "shared-s", "ann", 1)
    await spend(boto3_client, table, "shared-s", "bob", 2)
    await spend(boto3_client, table, "ann-only", "ann", 1)
    make_pump(endpoint, table).drain()

    def totals_items(user: str) -> list[dict[str, Any]]:
        return list(boto3_client.query(
            TableName=table, KeyConditionExpression="pk = :u",
            ExpressionAttributeValues={":u": {"S": f"USER#{user}"}})["Items"])

    assert any("s#shared-s" in i for i in totals_items("bob"))
    db = wrap_client(boto3_client)
    await execute_purge(db, table, await plan_purge(db, table, session_id="shared-s"))
    assert not [i for u in ("ann", "bob") for i in totals_items(u) if "s#shared-s" in i]
    assert await read_user_usage(boto3_client, table, "bob") == UsageTotals(2, 20, 4, 24)
    await execute_purge(db, table, await plan_purge(db, table, user_id="ann"))
    assert totals_items("ann") == []


@pytest.mark.parametrize("junk", [{"N": "1.5"}, {"N": "1E+40"}, {"N": "-3"}, {"S": "7"}])
async def test_a_table_writers_counts_item_is_not_counted_and_breaks_no_listing(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str,
    caplog: pytest.LogCaptureFixture, junk: dict[str, str],
) -> None:
    """No projector writes a count that is not a whole number: such an item (a fraction,
    an exponent, a sign, a string) is left out of the totals and logged, and
    ``list_sessions`` still answers (it raised a bare ``ValueError``)."""
    from eventstore import list_sessions

    await spend(boto3_client, table, "real", "ann", 2)
    make_pump(endpoint, table).drain()
    boto3_client.put_item(TableName=table, Item={
        "pk": {"S": "USER#ann"}, "sk": {"S": "USAGE#99"}, "requests": junk,
        "input_tokens": {"N": "1000"}})
    expected = UsageTotals(2, 20, 4, 24)
    assert await read_user_usage(boto3_client, table, "ann") == expected
    page = await list_sessions(boto3_client, table, "ann")
    assert [s.session_id for s in page.sessions] == ["real"] and page.user_usage == expected
    assert "not whole numbers" in caplog.text
