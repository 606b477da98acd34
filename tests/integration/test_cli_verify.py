"""``convlog verify``: intact chains pass; changed, deleted, swapped, moved events fail."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from cli_helpers import cli, event_key, run

from convlog.local import EmbeddedEndpoint
from eventstore import DynamoDBSession


def _session(client: Any, table: str, events: int = 5, **kwargs: Any) -> str:
    sid = f"v-{uuid.uuid4().hex[:8]}"
    session = DynamoDBSession(sid, client, table, user_id="ann", **kwargs)

    async def go() -> None:
        for n in range(1, events + 1):
            await session.add_items([{"role": "user", "content": f"message {n}"}])

    run(go())
    return sid


def _verify(capsys: Any, endpoint: EmbeddedEndpoint, table: str, sid: str) -> tuple[int, str]:
    result = cli(capsys, endpoint, table, "verify", sid)
    return result.code, result.out.strip()


def test_intact_session_exits_0(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sid = _session(boto3_client, table)
    run(DynamoDBSession(sid, boto3_client, table).pop_item())
    run(DynamoDBSession(sid, boto3_client, table).clear_session())
    code, out = _verify(capsys, endpoint, table, sid)
    assert code == 0
    assert out == f"OK      {sid}: 7 events, seq 1..7, hash chain intact"


def test_unknown_session_exits_1(
    endpoint: EmbeddedEndpoint, table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _verify(capsys, endpoint, table, "nobody")
    assert code == 1 and out == "EMPTY   nobody: no events"


def test_changed_payload_names_the_seq(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sid = _session(boto3_client, table)
    boto3_client.update_item(
        TableName=table, Key=event_key(sid, 3),
        UpdateExpression="SET payload = :p",
        ExpressionAttributeValues={":p": {"S": '{"items":[{"content":"forged","role":"user"}]}'}},
    )
    code, out = _verify(capsys, endpoint, table, sid)
    assert code == 1
    assert out == f"BROKEN  {sid}: seq 3 was changed: its content does not match its hash"


def test_changed_metadata_is_caught_too(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sid = _session(boto3_client, table)
    boto3_client.update_item(
        TableName=table, Key=event_key(sid, 2), UpdateExpression="SET user_id = :u",
        ExpressionAttributeValues={":u": {"S": "mallory"}},
    )
    code, out = _verify(capsys, endpoint, table, sid)
    assert code == 1 and "seq 2 was changed" in out


def test_deleted_event_names_the_missing_seq(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sid = _session(boto3_client, table)
    boto3_client.delete_item(TableName=table, Key=event_key(sid, 4))
    code, out = _verify(capsys, endpoint, table, sid)
    assert code == 1
    assert out == f"BROKEN  {sid}: seq 4 missing: the log jumps to seq 5"


def test_deleted_first_event_without_ttl_is_tampering(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sid = _session(boto3_client, table)
    boto3_client.delete_item(TableName=table, Key=event_key(sid, 1))
    code, out = _verify(capsys, endpoint, table, sid)
    assert code == 1 and "seq 1 missing" in out


def test_swapped_payloads_name_the_first_seq(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sid = _session(boto3_client, table)
    two = boto3_client.get_item(TableName=table, Key=event_key(sid, 2))["Item"]
    four = boto3_client.get_item(TableName=table, Key=event_key(sid, 4))["Item"]
    for key, source in ((2, four), (4, two)):
        boto3_client.update_item(
            TableName=table, Key=event_key(sid, key), UpdateExpression="SET payload = :p",
            ExpressionAttributeValues={":p": source["payload"]},
        )
    code, out = _verify(capsys, endpoint, table, sid)
    assert code == 1
    assert out == f"BROKEN  {sid}: seq 2 was changed: its content does not match its hash"


def test_swapped_whole_events_are_reported_as_reordered(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sid = _session(boto3_client, table)
    two = boto3_client.get_item(TableName=table, Key=event_key(sid, 2))["Item"]
    three = boto3_client.get_item(TableName=table, Key=event_key(sid, 3))["Item"]
    two["sk"], three["sk"] = three["sk"], two["sk"]
    boto3_client.put_item(TableName=table, Item=two)
    boto3_client.put_item(TableName=table, Item=three)
    code, out = _verify(capsys, endpoint, table, sid)
    assert code == 1
    assert out == f"BROKEN  {sid}: seq 2: the item holds the event of seq 3 (events moved)"


def test_rewritten_event_with_recomputed_hash_breaks_the_next_link(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A forger who recomputes the changed event's hash is caught by the next link."""
    from eventstore.events import ItemsAdded, chain_hash, payload_data, payload_digest

    sid = _session(boto3_client, table)
    old = boto3_client.get_item(TableName=table, Key=event_key(sid, 3))["Item"]
    forged = ItemsAdded(session_id=sid, seq=3, ts=old["ts"]["S"], user_id="ann",
                        token=old["token"]["S"], items=[{"role": "user", "content": "forged"}])
    boto3_client.update_item(
        TableName=table, Key=event_key(sid, 3),
        UpdateExpression="SET payload = :p, #h = :h, payload_sha256 = :d",
        ExpressionAttributeNames={"#h": "hash"},
        ExpressionAttributeValues={
            ":p": {"S": '{"items":[{"content":"forged","role":"user"}]}'},
            ":h": {"S": chain_hash(old["prev_hash"]["S"], forged, None)},
            ":d": {"S": payload_digest(payload_data(forged))},
        },
    )
    code, out = _verify(capsys, endpoint, table, sid)
    assert code == 1 and out.startswith(f"BROKEN  {sid}: seq 4 does not link to seq 3")


def test_deleted_newest_event_is_caught_by_the_snapshot(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from eventstore.fold import Snapshot
    from eventstore.snapshots import encode_snapshot

    sid = _session(boto3_client, table)
    boto3_client.put_item(TableName=table, Item=encode_snapshot(sid, Snapshot(5), ttl=None)[0])
    boto3_client.delete_item(TableName=table, Key=event_key(sid, 5))
    code, out = _verify(capsys, endpoint, table, sid)
    assert code == 1 and "seq 5..5 missing: the snapshot has applied seq 5" in out


def test_expired_prefix_is_reported_not_tampering(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Seq 1-2 expired: DynamoDB already deleted seq 1, seq 2 is still there.

    The events are written by a writer whose clock was two hours back, so their
    (hashed) ``ttl`` is honestly in the past; nobody edits an item.
    """
    import eventstore.session as session_module

    real = time.time
    monkeypatch.setattr(session_module.time, "time", lambda: real() - 7200)
    sid = _session(boto3_client, table, events=2, ttl_seconds=3600)
    monkeypatch.setattr(session_module.time, "time", real)
    session = DynamoDBSession(sid, boto3_client, table, user_id="ann", ttl_seconds=3600)
    for n in range(3, 6):
        run(session.add_items([{"role": "user", "content": f"message {n}"}]))
    boto3_client.delete_item(TableName=table, Key=event_key(sid, 1))
    code, out = _verify(capsys, endpoint, table, sid)
    assert code == 0
    assert out == (f"OK      {sid}: 4 events, seq 2..5, hash chain intact; "
                   "seq 1..2 expired (TTL), not tampering")
    boto3_client.delete_item(TableName=table, Key=event_key(sid, 4))
    code, out = _verify(capsys, endpoint, table, sid)
    assert code == 1 and "seq 4 missing" in out


def test_verify_all_reports_each_session_and_fails_if_one_is_broken(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _session(boto3_client, table, events=2)
    bad = _session(boto3_client, table, events=3)
    assert cli(capsys, endpoint, table, "verify", "--all").code == 0
    boto3_client.delete_item(TableName=table, Key=event_key(bad, 2))
    result = cli(capsys, endpoint, table, "verify", "--all")
    assert result.code == 1
    lines = sorted(result.out.strip().splitlines())
    assert lines == sorted([
        f"OK      {good}: 2 events, seq 1..2, hash chain intact",
        f"BROKEN  {bad}: seq 2 missing: the log jumps to seq 3",
        "2 sessions checked, 1 broken",
    ])
