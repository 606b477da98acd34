"""``verify --deep`` names a view that disagrees with the log, and ``rebuild`` (without
``--reset``) repairs it -- forged, corrupt, or ahead of the log (issue 10)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from cli_helpers import cli, run
from projection_support import make_pump

from convlog.local import EmbeddedEndpoint
from eventstore import DynamoDBSession
from eventstore.fold import Entry, Snapshot
from eventstore.keys import META_SK, SNAPSHOT_SK, session_pk
from eventstore.snapshots import decode_snapshot, encode_snapshot
from eventstore.views import decode_meta


def msg(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def projected(endpoint: EmbeddedEndpoint, client: Any, table: str) -> str:
    sid = f"dv-{uuid.uuid4().hex[:8]}"
    writer = DynamoDBSession(sid, client, table, user_id="ann")
    for n in (1, 2, 3):
        run(writer.add_items([msg(f"m{n}")]))
    make_pump(endpoint, table).drain()
    return sid


def view(client: Any, table: str, sid: str, sk: str) -> dict[str, Any]:
    item: dict[str, Any] = client.get_item(
        TableName=table, Key={"pk": {"S": session_pk(sid)}, "sk": {"S": sk}},
        ConsistentRead=True)["Item"]
    return item


def deep(capsys: Any, endpoint: EmbeddedEndpoint, table: str, sid: str) -> tuple[int, str]:
    result = cli(capsys, endpoint, table, "verify", sid, "--deep")
    return result.code, result.out.strip()


def rebuild_and_check(
    capsys: Any, endpoint: EmbeddedEndpoint, client: Any, table: str, sid: str
) -> None:
    assert cli(capsys, endpoint, table, "rebuild", sid).code == 0
    assert deep(capsys, endpoint, table, sid) == (
        0, f"OK      {sid}: 3 events, seq 1..3, hash chain intact; views agree with the log")
    snapshot = decode_snapshot(view(client, table, sid, SNAPSHOT_SK))
    assert (snapshot.seq, snapshot.items()) == (3, [msg("m1"), msg("m2"), msg("m3")])
    assert decode_meta(view(client, table, sid, META_SK)).item_count == 3


def test_a_forged_snapshot_bound_to_the_right_head_is_named_and_repaired(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the chain cannot prove on a read: the content of a bound snapshot."""
    sid = projected(endpoint, boto3_client, table)
    real = decode_snapshot(view(boto3_client, table, sid, SNAPSHOT_SK))
    forged = Snapshot(3, (Entry(msg("forged"), 1),), hash=real.hash)
    boto3_client.put_item(TableName=table, Item=encode_snapshot(sid, forged, ttl=None)[0])
    assert cli(capsys, endpoint, table, "verify", sid).code == 0  # the chain is intact
    assert deep(capsys, endpoint, table, sid) == (
        1, f"BROKEN  {sid}: SNAPSHOT at seq 3 holds other items than the log")
    rebuild_and_check(capsys, endpoint, boto3_client, table, sid)


def test_a_snapshot_ahead_of_the_log_is_named_and_repaired(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sid = projected(endpoint, boto3_client, table)
    ahead = Snapshot(99, (Entry(msg("future"), 99),), hash="f" * 64)
    boto3_client.put_item(TableName=table, Item=encode_snapshot(sid, ahead, ttl=None)[0])
    code, out = deep(capsys, endpoint, table, sid)
    assert code == 1 and out.startswith(f"BROKEN  {sid}: seq 4..99 missing")
    assert run(DynamoDBSession(sid, boto3_client, table).get_items()) == [
        msg("m1"), msg("m2"), msg("m3")]
    rebuild_and_check(capsys, endpoint, boto3_client, table, sid)


def test_a_corrupt_snapshot_and_a_wrong_meta_are_named_and_repaired(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sid = projected(endpoint, boto3_client, table)
    item = view(boto3_client, table, sid, SNAPSHOT_SK)
    item["enc"] = {"S": "zlib"}  # its JSON payload is not zlib data
    boto3_client.put_item(TableName=table, Item=item)
    code, out = deep(capsys, endpoint, table, sid)
    assert code == 1 and out.startswith(f"BROKEN  {sid}: SNAPSHOT cannot be decoded")
    rebuild_and_check(capsys, endpoint, boto3_client, table, sid)
    meta = view(boto3_client, table, sid, META_SK)
    meta["item_count"] = {"N": "7"}
    boto3_client.put_item(TableName=table, Item=meta)
    assert deep(capsys, endpoint, table, sid) == (
        1, f"BROKEN  {sid}: META counts 7 items at seq 3, the log 3")
    rebuild_and_check(capsys, endpoint, boto3_client, table, sid)
