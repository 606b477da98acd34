"""Branches in ``list_sessions``: listed under their session, with a ``branch_id``.

A branch lives in the partition ``<session>#branch#<id>``. A session id that could make
the same partition (one holding ``#branch#``, or ending in ``#branch``) is refused before
any write, and the listing takes a branch from its ``branch_created`` event, never from
the partition's name.
"""

from __future__ import annotations

from typing import Any

import pytest

from convlog.local import EmbeddedEndpoint
from eventstore import DynamoDBSession, list_sessions
from eventstore.errors import InvalidSessionIdError
from tests.conftest import RequestCounter
from tests.integration.projection_support import History, make_pump, put_events, ts_of


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


@pytest.mark.parametrize("session_id", ["x#branch#alt", "x#branch#", "a#branch#b#c", "x#branch"])
def test_a_session_id_that_could_name_a_branch_is_refused(
    boto3_client: Any, table: str, counter: RequestCounter, session_id: str
) -> None:
    counter.reset()
    with pytest.raises(InvalidSessionIdError, match="#branch"):
        DynamoDBSession(session_id, boto3_client, table)
    assert counter.total == 0


async def test_ids_near_the_mark_still_work(boto3_client: Any, table: str) -> None:
    for session_id in ("x#branches", "x#branc", "branch#x", "x#Branch#y"):
        session = DynamoDBSession(session_id, boto3_client, table)
        await session.add_items([user(session_id)])
        assert await session.get_items() == [user(session_id)]


async def test_branches_are_listed_under_their_session_with_a_branch_id(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str
) -> None:
    session = DynamoDBSession("x", boto3_client, table, user_id="ann")
    await session.add_items([user("q1"), user("q2")])
    await session.create_branch_from_turn(2, "alt")
    await session.add_items([user("other")])
    # a partition named like a branch, but written without branch_created (raw events)
    history = History("y#branch#alt", user_id="ann")
    put_events(boto3_client, table, [history.build(("add", [user("raw")]), ts_of(1))])
    make_pump(endpoint, table).drain()
    page = await list_sessions(boto3_client, table, "ann")
    listed = sorted(((s.session_id, s.branch_id, s.item_count) for s in page.sessions),
                    key=lambda row: (row[0], row[1] or ""))
    assert listed == [("x", None, 2), ("x", "alt", 2), ("y#branch#alt", None, 1)]
