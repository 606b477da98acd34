"""``carry_out_purge``: the steps ``convlog purge`` and the console share, in their order.

The table is moto's server over HTTP; the signer is a fault injector (it records what
the table held when it was asked to sign, or refuses like KMS would): the real signer's
records are tested with KMS and Object Lock in ``test_purge_anchor``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, cast

import pytest

from convlog.anchor import AnchorError, Digest
from convlog.purge import plan_purge
from convlog.purge_record import PurgeSigner
from convlog.purge_steps import carry_out_purge
from eventstore import DynamoDBSession
from eventstore.client import wrap_client
from eventstore.errors import CorruptEventError
from eventstore.user_usage import UsageTotals, read_user_usage
from tests.advanced.test_user_usage import spend
from tests.integration.projection_support import make_pump


class WatchingSigner:
    """Records, at each signing, which of the user's texts the session still held."""

    def __init__(self, client: Any, table: str, session_id: str, refuse: bool = False) -> None:
        self.client, self.table, self.session_id = client, table, session_id
        self.refuse = refuse
        self.calls: list[tuple[dict[str, int], str | None, list[str]]] = []

    def sign(self, heads: Mapping[str, int], *, user_id: str | None = None) -> Digest | None:
        if self.refuse:
            raise AnchorError("KMS refused: AccessDeniedException")
        # the signer runs in a worker thread (asyncio.to_thread): a loop of its own here
        now = asyncio.run(texts(self.client, self.table, self.session_id))
        self.calls.append((dict(heads), user_id, now))
        return None


async def texts(client: Any, table: str, session_id: str) -> list[str]:
    """The texts ``get_items`` reads now (erased content reads as ``[erased]``)."""
    items = await DynamoDBSession(session_id, client, table).get_items()
    return [str(i["content"]) for i in items]


async def shared_session(client: Any, table: str, session_id: str) -> None:
    alice = DynamoDBSession(session_id, client, table, user_id="alice")
    bob = DynamoDBSession(session_id, client, table, user_id="bob")
    await alice.add_items([{"role": "user", "content": "alice here"}])
    await bob.add_items([{"role": "user", "content": "bob here"}])


async def test_content_is_signed_before_and_after_it_is_erased(
    boto3_client: Any, table: str
) -> None:
    await shared_session(boto3_client, table, "both")
    db = wrap_client(boto3_client)
    signer = WatchingSigner(boto3_client, table, "both")
    plan = await plan_purge(db, table, user_id="alice")
    outcome = await carry_out_purge(db, table, plan, erase_content_of="alice",
                                    signer=cast(PurgeSigner, signer))
    assert [e.session_id for e in outcome.erased] == ["both"] and outcome.deleted == 0
    (before, user_b, seen_b), (after, user_a, seen_a) = signer.calls
    assert (before, user_b) == ({"both": 2}, "alice")  # the head planned
    assert (after, user_a) == ({"both": outcome.erased[0].through}, "alice")
    assert "alice here" in seen_b  # the record was signed while the content was there
    assert "alice here" not in seen_a and "bob here" in seen_a
    assert "bob here" in await texts(boto3_client, table, "both")


@pytest.mark.parametrize("content", [True, False], ids=["content", "whole"])
async def test_a_refused_signature_erases_nothing(
    boto3_client: Any, table: str, content: bool
) -> None:
    await shared_session(boto3_client, table, "kept")
    before = await texts(boto3_client, table, "kept")
    db = wrap_client(boto3_client)
    plan = await plan_purge(db, table, user_id="alice")
    with pytest.raises(AnchorError, match="KMS refused"):
        await carry_out_purge(
            db, table, plan, erase_content_of="alice" if content else None,
            signer=cast(PurgeSigner, WatchingSigner(boto3_client, table, "kept", refuse=True)))
    assert await texts(boto3_client, table, "kept") == before == ["alice here", "bob here"]


async def test_a_content_only_purge_drops_the_users_totals(
    endpoint: Any, boto3_client: Any, table: str
) -> None:
    await spend(boto3_client, table, "spent", "ann", 2)
    await spend(boto3_client, table, "spent", "bob", 1)
    make_pump(endpoint, table).drain()
    assert await read_user_usage(boto3_client, table, "ann") == UsageTotals(2, 20, 4, 24)
    db = wrap_client(boto3_client)
    outcome = await carry_out_purge(db, table, await plan_purge(db, table, user_id="ann"),
                                    erase_content_of="ann")
    assert outcome.plan.empty and [e.session_id for e in outcome.erased] == ["spent"]
    assert await read_user_usage(boto3_client, table, "ann") == UsageTotals()
    assert await read_user_usage(boto3_client, table, "bob") == UsageTotals(1, 10, 2, 12)


async def test_an_erasure_that_cannot_run_is_not_signed(
    boto3_client: Any, table: str
) -> None:
    """A table writer's malformed event of the user (no schema version) stops the content
    erasure: every shared session is read and checked before the first record is signed,
    so no record claims an erasure that never happened, and nothing is written."""
    await shared_session(boto3_client, table, "forged")
    await shared_session(boto3_client, table, "fine")
    key = {"pk": {"S": "SESSION#forged"}, "sk": {"S": "EVENT#000000000001"}}
    item = boto3_client.get_item(TableName=table, Key=key)["Item"]
    item["v"] = {"S": "two"}
    boto3_client.put_item(TableName=table, Item=item)
    before = {sid: await texts(boto3_client, table, sid) for sid in ("fine",)}
    db = wrap_client(boto3_client)
    signer = WatchingSigner(boto3_client, table, "fine")
    with pytest.raises(CorruptEventError, match="no schema version"):
        await carry_out_purge(db, table, await plan_purge(db, table, user_id="alice"),
                              erase_content_of="alice", signer=cast(PurgeSigner, signer))
    assert signer.calls == []
    assert {sid: await texts(boto3_client, table, sid) for sid in ("fine",)} == before
