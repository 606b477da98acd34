"""Issue 11, cases 5 and 6: the user index is bound to the tenant; ids fit every key.

A session ``<tenant>/...`` is never listed under a user of another tenant: the session
rejects such a user at construction, and the projector does not index what a hostile
writer put in its events. Ids too long for a key they feed are rejected before any
request.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from conftest import RequestCounter
from projection_support import History, make_pump, put_events, ts_of

from convlog.local import EmbeddedEndpoint
from eventstore import DynamoDBSession, list_sessions
from eventstore.client import wrap_client
from eventstore.errors import InvalidSessionIdError, InvalidUserIdError
from eventstore.views import read_views

HELLO = [{"role": "user", "content": "hello there"}]


def test_a_session_rejects_a_user_of_another_tenant(boto3_client: Any) -> None:
    counter = RequestCounter(boto3_client)
    with pytest.raises(InvalidUserIdError, match="tenant"):
        DynamoDBSession("acme/conv-1", boto3_client, "t", user_id="globex/alice")
    with pytest.raises(InvalidUserIdError, match="tenant"):
        DynamoDBSession("acme/conv-1", boto3_client, "t", user_id="alice")
    DynamoDBSession("acme/conv-1", boto3_client, "t", user_id="acme/alice")
    DynamoDBSession("conv-1", boto3_client, "t", user_id="globex/alice")  # no tenant: global
    assert counter.total == 0


async def test_the_projector_does_not_list_a_session_under_another_tenants_user(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str
) -> None:
    sid = f"acme/conv-{uuid.uuid4().hex[:6]}"
    history = History(sid, user_id="globex/alice")  # written by acme's role, directly
    put_events(boto3_client, table, [history.build(("add", HELLO), ts_of(1))])
    make_pump(endpoint, table).drain()
    assert (await list_sessions(boto3_client, table, "globex/alice")).sessions == []
    state = await read_views(wrap_client(boto3_client), table, sid)
    assert state.snapshot is not None and state.snapshot.seq == 1  # projected, not listed


def test_ids_too_long_for_the_index_are_rejected_before_any_request(
    boto3_client: Any,
) -> None:
    counter = RequestCounter(boto3_client)
    with pytest.raises(InvalidUserIdError, match="2048"):
        DynamoDBSession("s-1", boto3_client, "t", user_id="u" * 2100)
    with pytest.raises(InvalidSessionIdError, match="1024"):
        DynamoDBSession("s" * 1000, boto3_client, "t", user_id="bob")
    DynamoDBSession("s" * 1000, boto3_client, "t")  # without a user it fits its keys
    assert counter.total == 0


async def test_an_oversize_user_written_directly_does_not_block_the_session(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str
) -> None:
    sid = f"big-{uuid.uuid4().hex[:6]}"
    history = History(sid, user_id="u" * 2100)
    put_events(boto3_client, table, [history.build(("add", HELLO), ts_of(1)),
                                     history.build(("add", HELLO), ts_of(2))])
    pump = make_pump(endpoint, table)
    pump.drain()
    assert pump.stats.retries == 0 and pump.stats.skipped == 0
    state = await read_views(wrap_client(boto3_client), table, sid)
    assert state.meta is not None and state.meta.seq == 2
    assert state.meta.title == "hello there"


async def test_a_forged_index_item_in_a_tenants_own_partition_lists_nothing_elsewhere(
    boto3_client: Any, table: str
) -> None:
    # acme's role may put any item, with any attributes, into SESSION#acme/... partitions
    sid = f"acme/conv-{uuid.uuid4().hex[:6]}"
    for sk in ("META", "FORGED"):
        boto3_client.put_item(TableName=table, Item={
            "pk": {"S": f"SESSION#{sid}"}, "sk": {"S": sk}, "v": {"N": "1"},
            "seq": {"N": "1"}, "created": {"S": ts_of(1)}, "last_active": {"S": ts_of(1)},
            "item_count": {"N": "1"}, "title": {"S": "acme's bait"},
            "user_id": {"S": "globex/alice"}, "gsi1pk": {"S": "USER#globex/alice"},
            "gsi1sk": {"S": f"{ts_of(1)}#{sid}#{sk}"},
        })
    assert (await list_sessions(boto3_client, table, "globex/alice")).sessions == []
