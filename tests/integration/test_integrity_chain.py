"""Hash schema 2: every field that changes an event's meaning is covered (issue 10).

Each test edits the table the way a table writer can (``PutItem``/``UpdateItem`` on the
session's own partition) and checks that ``convlog verify`` names the edited seq.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from cli_helpers import cli, event_key, run

from convlog.local import EmbeddedEndpoint
from eventstore import DynamoDBSession
from eventstore.errors import CorruptEventError
from eventstore.events import GENESIS_HASH, ItemsAdded, chain_hash, now_iso
from eventstore.log import EventLog


def _session(client: Any, table: str, *, ttl_seconds: int | None = 3600) -> str:
    sid = f"h-{uuid.uuid4().hex[:8]}"
    session = DynamoDBSession(sid, client, table, user_id="ann", ttl_seconds=ttl_seconds)
    for n in range(1, 5):
        run(session.add_items([{"role": "user", "content": f"message {n}"}]))
    return sid


def _verify(capsys: Any, endpoint: EmbeddedEndpoint, table: str, sid: str) -> tuple[int, str]:
    result = cli(capsys, endpoint, table, "verify", sid)
    return result.code, result.out.strip()


def test_new_events_are_written_with_schema_2_and_their_payload_digest(
    boto3_client: Any, table: str
) -> None:
    sid = _session(boto3_client, table)
    item = boto3_client.get_item(TableName=table, Key=event_key(sid, 1))["Item"]
    assert item["v"] == {"N": "2"} and len(item["payload_sha256"]["S"]) == 64


def test_ttl_moved_into_the_past_is_tampering_not_expiry(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Case 4: re-putting a live event with a past ``ttl`` is named, not called expiry."""
    sid = _session(boto3_client, table)
    item = boto3_client.get_item(TableName=table, Key=event_key(sid, 2))["Item"]
    item["ttl"] = {"N": str(int(time.time()) - 60)}
    boto3_client.put_item(TableName=table, Item=item)
    code, out = _verify(capsys, endpoint, table, sid)
    assert code == 1
    assert out == f"BROKEN  {sid}: seq 2 was changed: its content, ttl does not match its hash"


def test_ttl_added_to_a_permanent_event_is_tampering(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sid = _session(boto3_client, table, ttl_seconds=None)
    boto3_client.update_item(
        TableName=table, Key=event_key(sid, 1), UpdateExpression="SET #t = :t",
        ExpressionAttributeNames={"#t": "ttl"},
        ExpressionAttributeValues={":t": {"N": str(int(time.time()) - 60)}},
    )
    code, out = _verify(capsys, endpoint, table, sid)
    assert code == 1 and out.startswith(f"BROKEN  {sid}: seq 1 was changed")


@pytest.mark.parametrize("attr,value", [
    ("type", {"S": "item_popped"}),
    ("ts", {"S": "2020-01-01T00:00:00.000Z"}),
    ("user_id", {"S": "mallory"}),
    ("token", {"S": "another-token"}),
    ("payload_sha256", {"S": "0" * 64}),
])
def test_every_hashed_header_field_is_covered(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str,
    capsys: pytest.CaptureFixture[str], attr: str, value: dict[str, Any],
) -> None:
    sid = _session(boto3_client, table)
    item = boto3_client.get_item(TableName=table, Key=event_key(sid, 3))["Item"]
    if attr == "type":  # a valid item_popped body, so the event still decodes
        item["payload"] = {"S": '{"item":{"content":"message 3","role":"user"}}'}
    item[attr] = value
    boto3_client.put_item(TableName=table, Item=item)
    code, out = _verify(capsys, endpoint, table, sid)
    assert code == 1 and out.startswith(f"BROKEN  {sid}: seq 3 was changed"), out


def test_payload_changed_with_its_digest_recomputed_breaks_the_hash(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from eventstore.events import payload_digest

    sid = _session(boto3_client, table)
    forged = {"items": [{"content": "forged", "role": "user"}]}
    boto3_client.update_item(
        TableName=table, Key=event_key(sid, 2), UpdateExpression="SET payload = :p, #d = :d",
        ExpressionAttributeNames={"#d": "payload_sha256"},
        ExpressionAttributeValues={
            ":p": {"S": '{"items":[{"content":"forged","role":"user"}]}'},
            ":d": {"S": payload_digest(forged)},
        },
    )
    code, out = _verify(capsys, endpoint, table, sid)
    assert code == 1 and out.startswith(f"BROKEN  {sid}: seq 2 was changed")


def test_schema_1_events_still_verify_and_a_downgrade_is_named(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Events stored before schema 2 keep verifying; new ones append with schema 2."""
    sid = f"old-{uuid.uuid4().hex[:8]}"
    log = EventLog(boto3_client, table)
    prev = GENESIS_HASH
    for seq in (1, 2):
        old = ItemsAdded(v=1, session_id=sid, seq=seq, ts=now_iso(), token=f"t{seq}",
                         items=[{"role": "user", "content": f"old {seq}"}])
        prev = run(log.put(old, prev, ttl=None)).hash
        assert prev == chain_hash(GENESIS_HASH if seq == 1 else prev, old) or seq == 2
    run(DynamoDBSession(sid, boto3_client, table).add_items([{"role": "user", "content": "new"}]))
    items = {i["sk"]["S"]: i for i in boto3_client.query(
        TableName=table, KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": {"S": f"SESSION#{sid}"}})["Items"]}
    assert [items[f"EVENT#{n:012d}"]["v"]["N"] for n in (1, 2, 3)] == ["1", "1", "2"]
    code, out = _verify(capsys, endpoint, table, sid)
    assert (code, out) == (0, f"OK      {sid}: 3 events, seq 1..3, hash chain intact")
    assert run(DynamoDBSession(sid, boto3_client, table).get_items()) == [
        {"role": "user", "content": "old 1"}, {"role": "user", "content": "old 2"},
        {"role": "user", "content": "new"},
    ]


@pytest.mark.parametrize("sk", ["EVENT#999999999999", "EVENT#zzz", "EVENT#00000000000x"])
def test_a_junk_event_row_is_a_typed_error_on_every_path(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str,
    capsys: pytest.CaptureFixture[str], sk: str,
) -> None:
    """A table writer puts a row under an event key that no writer makes (no ``seq``, no
    ``hash``, a key naming no seq): reads and writes fail with ``CorruptEventError`` (never
    a bare ``KeyError``/``ValueError``), nothing is written, and ``verify`` reports it."""
    sid = _session(boto3_client, table, ttl_seconds=None)
    pk = {"S": f"SESSION#{sid}"}
    boto3_client.put_item(TableName=table, Item={"pk": pk, "sk": {"S": sk}})
    before = boto3_client.query(TableName=table, KeyConditionExpression="pk = :pk",
                                ExpressionAttributeValues={":pk": pk})["Items"]
    for call in (
        lambda s: s.get_items(), lambda s: s.get_items(limit=2), lambda s: s.pop_item(),
        lambda s: s.add_items([{"role": "user", "content": "after"}]),
    ):
        with pytest.raises(CorruptEventError):
            run(call(DynamoDBSession(sid, boto3_client, table)))
    after = boto3_client.query(TableName=table, KeyConditionExpression="pk = :pk",
                               ExpressionAttributeValues={":pk": pk})["Items"]
    assert after == before
    code, out = _verify(capsys, endpoint, table, sid)
    assert code == 1 and out.startswith(f"BROKEN  {sid}"), out
