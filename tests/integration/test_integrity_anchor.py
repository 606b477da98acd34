"""The anchor (issue 10, cases 3, 5 and 6): signed, chained digests of session heads in
an Object Lock bucket, and ``convlog verify`` checking the log against them.

Everything runs on the embedded endpoint: moto serves S3 (Object Lock enforced) and KMS
(``ECC_NIST_P256`` Sign/Verify) on the same port as DynamoDB.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import Any

import pytest
from cli_helpers import cli, event_key, run
from projection_support import make_pump

from convlog.anchor import DigestStore
from convlog.anchor_run import create_anchor_resources, write_digest
from convlog.audit import replay
from convlog.local import EmbeddedEndpoint
from eventstore import DynamoDBSession
from eventstore.events import chain_hash, payload_data, payload_digest
from eventstore.keys import META_SK, SNAPSHOT_SK, session_pk
from eventstore.log import EventLog
from eventstore.records import decode_event, encode_event


@pytest.fixture
def store(endpoint: EmbeddedEndpoint, table: str, monkeypatch: pytest.MonkeyPatch) -> DigestStore:
    """A fresh locked bucket and signing key; ``convlog`` finds them in the environment."""
    s3, kms = endpoint.client("s3"), endpoint.client("kms")
    bucket = f"digests-{uuid.uuid4().hex[:10]}"
    key_id = create_anchor_resources(s3, kms, bucket)
    monkeypatch.setenv("CONVLOG_DIGEST_BUCKET", bucket)
    monkeypatch.setenv("CONVLOG_SIGNING_KEY", key_id)
    return DigestStore(s3, kms, bucket, key_id, table)


def msg(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def session(client: Any, table: str, n: int = 5, **kwargs: Any) -> str:
    sid = f"an-{uuid.uuid4().hex[:8]}"
    writer = DynamoDBSession(sid, client, table, user_id="ann", **kwargs)
    for i in range(1, n + 1):
        run(writer.add_items([msg(f"m{i}")]))
    return sid


def anchor(endpoint: EmbeddedEndpoint, table: str, capsys: Any) -> str:
    result = cli(capsys, endpoint, table, "anchor")
    assert result.code == 0, result.err
    return result.out.strip()


def verify(endpoint: EmbeddedEndpoint, table: str, capsys: Any, *args: str) -> tuple[int, str]:
    result = cli(capsys, endpoint, table, "verify", *args)
    return result.code, result.out.strip()


def test_a_digest_is_signed_chained_locked_and_holds_the_changed_heads(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, store: DigestStore,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a, b = session(boto3_client, table, 2), session(boto3_client, table, 3)
    assert anchor(endpoint, table, capsys).startswith("digest 1: 2 session head(s) anchored")
    run(DynamoDBSession(b, boto3_client, table).add_items([msg("more")]))
    assert anchor(endpoint, table, capsys).startswith("digest 2: 1 session head(s) anchored")
    anchors = store.load()
    assert anchors.problem is None and anchors.digests == 2
    assert [(h.seq, h.digest) for h in anchors.heads[a]] == [(2, 1)]
    assert sorted((h.seq, h.digest) for h in anchors.heads[b]) == [(3, 1), (4, 2)]
    head = EventLog(boto3_client, table)
    assert anchors.heads[b][0].hash == run(head.read_head(b)).hash
    keys = [o["Key"] for o in store.s3.list_objects_v2(Bucket=store.bucket)["Contents"]]
    versions = store.s3.list_object_versions(Bucket=store.bucket)["Versions"]
    head_object = store.s3.head_object(Bucket=store.bucket, Key=keys[0])
    assert head_object["ObjectLockMode"] == "COMPLIANCE"
    assert head_object["Metadata"]["algorithm"] == "ECDSA_SHA_256"
    with pytest.raises(store.s3.exceptions.ClientError, match="AccessDenied"):
        store.s3.delete_object(Bucket=store.bucket, Key=keys[0],
                               VersionId=versions[0]["VersionId"])
    code, out = verify(endpoint, table, capsys, b)
    assert (code, out) == (0, f"OK      {b}: 4 events, seq 1..4, hash chain intact; "
                              "anchored at seq 4 (digest 2)")


def test_one_anchor_run_costs_one_list_get_sign_put_whatever_the_sessions(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, store: DigestStore
) -> None:
    counts: Counter[str] = Counter()

    def count(service: str) -> Any:
        def on_send(request: Any, **_: Any) -> None:
            target = request.headers.get("X-Amz-Target", b"")
            target = target.decode() if isinstance(target, bytes) else target
            name = target.split(".")[-1] if target else request.method
            counts[f"{service}:{name}"] += 1
        return on_send

    store.s3.meta.events.register("before-send.s3", count("s3"))
    store.kms.meta.events.register("before-send.kms", count("kms"))
    boto3_client.meta.events.register("before-send.dynamodb", count("dynamodb"))
    log = EventLog(boto3_client, table)
    run(write_digest(log, store))  # digest 1, empty table
    for _ in range(20):
        session(boto3_client, table, 1)
    counts.clear()
    digest = run(write_digest(log, store))
    assert len(digest.heads) == 20 and digest.number == 2
    # ListObjectsV2 and GetObject are GETs, PutObject a PUT (S3 has no X-Amz-Target)
    assert dict(counts) == {"s3:GET": 2, "kms:Sign": 1, "s3:PUT": 1, "dynamodb:Scan": 1}


def test_truncated_tail_is_named_and_so_is_its_rewrite(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, store: DigestStore,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Case 3: cut the newest events (and the views); then a normal writer appends again."""
    sid = session(boto3_client, table, 5)
    make_pump(endpoint, table).drain()
    anchor(endpoint, table, capsys)
    for sk in ("EVENT#000000000004", "EVENT#000000000005", SNAPSHOT_SK, META_SK):
        boto3_client.delete_item(TableName=table,
                                 Key={"pk": {"S": session_pk(sid)}, "sk": {"S": sk}})
    code, out = verify(endpoint, table, capsys, sid)
    assert code == 1 and out == (
        f"BROKEN  {sid}: seq 4..5 missing: digest 1 anchored seq 5 but the log ends at "
        "seq 3 (the tail was cut)")
    writer = DynamoDBSession(sid, boto3_client, table)
    run(writer.add_items([msg("other 4")]))
    run(writer.add_items([msg("other 5")]))
    code, out = verify(endpoint, table, capsys, sid)
    assert code == 1 and out == (
        f"BROKEN  {sid}: seq 5 differs from digest 1: the chain was rewritten "
        "(recomputed, or cut and appended again)")
    replayed = run(replay(EventLog(boto3_client, table), sid)).items
    assert run(writer.get_items()) == replayed == [
        msg("m1"), msg("m2"), msg("m3"), msg("other 4"), msg("other 5")]


def test_deleting_live_first_events_of_a_ttl_session_is_not_an_expired_prefix(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, store: DigestStore,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Case 5: the digest anchored seq 3 with a ttl still in the future."""
    sid = session(boto3_client, table, 3, ttl_seconds=3600)
    anchor(endpoint, table, capsys)
    writer = DynamoDBSession(sid, boto3_client, table, ttl_seconds=3600)
    run(writer.add_items([msg("m4")]))
    for seq in (1, 2, 3):
        boto3_client.delete_item(TableName=table, Key=event_key(sid, seq))
    code, out = verify(endpoint, table, capsys, sid)
    assert code == 1
    assert out.startswith(f"BROKEN  {sid}: seq 3 was deleted while live: digest 1 anchored "
                          "it, expiring 20")


def test_an_expired_anchored_prefix_is_still_honest_expiry(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, store: DigestStore,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    import eventstore.session as session_module

    real = time.time
    monkeypatch.setattr(session_module.time, "time", lambda: real() - 7200)
    sid = session(boto3_client, table, 2, ttl_seconds=3600)  # ttl already past
    monkeypatch.setattr(session_module.time, "time", real)
    anchor(endpoint, table, capsys)
    run(DynamoDBSession(sid, boto3_client, table, ttl_seconds=3600).add_items([msg("m3")]))
    for seq in (1, 2):  # what DynamoDB's TTL deletion does
        boto3_client.delete_item(TableName=table, Key=event_key(sid, seq))
    code, out = verify(endpoint, table, capsys, sid)
    assert (code, out) == (0, f"OK      {sid}: 1 events, seq 3..3, hash chain intact; "
                              "seq 1..2 expired (TTL), not tampering")


def recompute_from(client: Any, table: str, sid: str, seq: int, **change: Any) -> None:
    """Edit event ``seq`` (content or ttl) and recompute every hash after it, like a forger."""
    events = run(_events(client, table, sid))
    prev = events[seq - 2].hash if seq > 1 else "0" * 64
    for stored in events[seq - 1:]:
        event, ttl = stored.event, stored.ttl
        if event.seq == seq:
            event = event.model_copy(update={k: v for k, v in change.items() if k != "ttl"})
            ttl = change.get("ttl", ttl)
        psha = payload_digest(payload_data(event))
        digest = chain_hash(prev, event, ttl, payload_sha256=psha)
        for item in encode_event(event, prev, digest, ttl=ttl, payload_sha256=psha):
            client.put_item(TableName=table, Item=item)
        prev = digest


async def _events(client: Any, table: str, sid: str) -> list[Any]:
    return [s async for s in EventLog(client, table).iter_events(sid)]


def test_a_recomputed_chain_is_caught_by_the_digest(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, store: DigestStore,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Case 6: the chain verifies on its own; only the signed head can tell."""
    sid = session(boto3_client, table, 5)
    anchor(endpoint, table, capsys)
    recompute_from(boto3_client, table, sid, 2, items=[msg("forged")])
    item = boto3_client.get_item(TableName=table, Key=event_key(sid, 2))["Item"]
    assert decode_event(item).event.items == [msg("forged")]  # type: ignore[union-attr]
    code, out = verify(endpoint, table, capsys, sid)
    assert code == 1 and out == (
        f"BROKEN  {sid}: seq 5 differs from digest 1: the chain was rewritten "
        "(recomputed, or cut and appended again)")


def test_a_ttl_moved_into_the_past_with_a_recomputed_chain_is_caught(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, store: DigestStore,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sid = session(boto3_client, table, 3, ttl_seconds=3600)
    anchor(endpoint, table, capsys)
    recompute_from(boto3_client, table, sid, 3, ttl=int(time.time()) - 5)
    code, out = verify(endpoint, table, capsys, sid)
    assert code == 1 and "seq 3 differs from digest 1" in out
    boto3_client.delete_item(TableName=table, Key=event_key(sid, 3))  # "expired" and gone
    code, out = verify(endpoint, table, capsys, sid)
    assert code == 1 and out.startswith(
        f"BROKEN  {sid}: seq 3..3 missing: digest 1 anchored seq 3")


def test_a_digest_not_signed_by_the_key_breaks_every_verify(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, store: DigestStore,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from convlog.anchor import Digest

    sid = session(boto3_client, table, 2)
    anchor(endpoint, table, capsys)
    link = store.latest_link()
    assert link is not None
    forged = Digest(2, table, "2026-01-01T00:00:00.000Z", link.sha256, ())
    store.s3.put_object(Bucket=store.bucket, Key=store.object_key(forged), Body=forged.body(),
                        Metadata={"signature": "AAAA"})
    code, out = verify(endpoint, table, capsys, sid)
    assert code == 1 and out.startswith("BROKEN  digests: digest 2 is not signed by")


def test_verify_all_includes_sessions_whose_every_event_was_deleted(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, store: DigestStore,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sid = session(boto3_client, table, 2)
    anchor(endpoint, table, capsys)
    for seq in (1, 2):
        boto3_client.delete_item(TableName=table, Key=event_key(sid, seq))
    code, out = verify(endpoint, table, capsys, "--all")
    assert code == 1 and f"BROKEN  {sid}: seq 1..2 missing: digest 1 anchored seq 2" in out


def test_anchor_without_a_bucket_or_key_is_a_one_line_error(
    endpoint: EmbeddedEndpoint, table: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CONVLOG_DIGEST_BUCKET", raising=False)
    monkeypatch.delenv("CONVLOG_SIGNING_KEY", raising=False)
    result = cli(capsys, endpoint, table, "anchor")
    assert result.code == 2 and result.out == ""
    assert result.err.strip() == (
        "convlog anchor: error: convlog anchor needs a digest bucket and a signing key: "
        "pass --digest-bucket and --signing-key or set CONVLOG_DIGEST_BUCKET and "
        "CONVLOG_SIGNING_KEY (convlog serve prints local ones)")
