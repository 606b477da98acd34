"""Issue 11 with 10: a purge leaves a signed record, so ``verify`` tells erasure from tampering.

On the embedded endpoint (moto serves DynamoDB, S3 with Object Lock, KMS and STS on one
port): ``convlog anchor`` signs the heads, ``convlog purge`` signs what it erases into the
same chain, and ``convlog verify`` reports the erased session as erased by that purge --
while a table writer who deletes a session, or erases content, without a signed record
(even with forged tombstones) is still reported.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from cli_helpers import cli, event_key, key_of, run, scan
from test_integrity_anchor import anchor, msg, session, store, verify

import convlog.anchor as anchor_module
from convlog.anchor import DigestStore, Link
from convlog.anchor_run import changed_heads, write_digest
from convlog.erase_content import erase_user_content
from convlog.local import EmbeddedEndpoint
from convlog.purge_record import session_records, user_sha256
from eventstore import DynamoDBSession
from eventstore.client import wrap_client
from eventstore.keys import MAX_SEQ, META_SK, SNAPSHOT_SK, session_pk
from eventstore.log import EventLog

__all__ = ["store"]  # the fixture, shared with the anchor tests


def _purge(endpoint: EmbeddedEndpoint, table: str, capsys: Any, *args: str) -> str:
    result = cli(capsys, endpoint, table, "purge", *args, "--yes")
    assert result.code == 0, result.err
    return result.out


def test_a_signed_purge_is_reported_as_erased_not_tampering(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, store: DigestStore,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sid, other = session(boto3_client, table, 3), session(boto3_client, table, 2)
    anchor(endpoint, table, capsys)  # digest 1 anchors seq 3 of sid
    out = _purge(endpoint, table, capsys, "--session", sid)
    assert "signed purge record: digest 2" in out
    anchors = store.load()
    assert anchors.problem is None and anchors.digests == 2
    (record,) = anchors.purges[sid]
    assert (record.through, record.mode, record.digest) == (3, "session", 2)
    assert record.by.startswith("arn:aws:")  # the caller, as STS names it
    code, text = verify(endpoint, table, capsys, sid)
    assert code == 0, text
    assert text == (f"ERASED  {sid}: seq 1..3 erased by purge at {record.at} "
                    f"(digest 2, by {record.by}), not tampering")
    for item in scan(boto3_client, table):  # the 25 h tombstones have expired and gone
        if key_of(item)[0] == session_pk(sid):
            boto3_client.delete_item(TableName=table, Key={"pk": item["pk"], "sk": item["sk"]})
    code, text = verify(endpoint, table, capsys, "--all")
    assert code == 0, text
    assert f"ERASED  {sid}: seq 1..3 erased by purge" in text
    assert f"OK      {other}: 2 events" in text and "2 sessions checked, 0 broken" in text


def test_deleting_an_anchored_session_without_a_signed_record_is_still_tampering(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, store: DigestStore,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sid = session(boto3_client, table, 3)
    anchor(endpoint, table, capsys)
    for seq in (1, 2, 3):  # a table writer deletes the session ...
        boto3_client.delete_item(TableName=table, Key=event_key(sid, seq))
    for sk in (META_SK, SNAPSHOT_SK):  # ... and forges the tombstones a purge leaves
        boto3_client.put_item(TableName=table, Item={
            "pk": {"S": session_pk(sid)}, "sk": {"S": sk}, "purged": {"N": "3"},
            "seq": {"N": str(MAX_SEQ)}, "ttl": {"N": str(int(time.time()) + 90_000)}})
    code, text = verify(endpoint, table, capsys, sid)
    assert code == 1
    assert text == (f"BROKEN  {sid}: seq 1..3 missing: digest 1 anchored seq 3 but the log "
                    "ends at seq 0 (the tail was cut)")
    # a purge of another session signs only that one: it excuses nothing here
    _purge(endpoint, table, capsys, "--session", session(boto3_client, table, 1))
    assert verify(endpoint, table, capsys, sid)[0] == 1


def test_a_purge_racing_a_writer_signs_what_it_erased_past_the_plan(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, store: DigestStore,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sid = session(boto3_client, table, 2)
    from convlog.purge import execute_purge, plan_purge
    from convlog.purge_record import PurgeSigner

    db = wrap_client(boto3_client)
    plan = run(plan_purge(db, table, session_id=sid))
    signer = PurgeSigner(store, by="tester")
    signer.sign(plan.heads)  # through seq 2
    writer = DynamoDBSession(sid, boto3_client, table, user_id="ann")
    run(writer.add_items([msg("late")]))  # seq 3, written after the plan
    anchor(endpoint, table, capsys)  # and anchored before the purge erases it
    run(execute_purge(db, table, plan))
    assert plan.heads == {sid: 3}
    assert signer.sign(plan.heads) is not None  # signs seq 3 too
    assert signer.sign(plan.heads) is None  # nothing new: no digest
    code, text = verify(endpoint, table, capsys, sid)
    assert code == 0 and text.startswith(f"ERASED  {sid}: seq 1..3 erased by purge"), text


def test_an_anchor_run_after_a_purge_still_anchors_what_changed_before_it(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, store: DigestStore,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(anchor_module, "SKEW_SECONDS", 0)
    log = EventLog(boto3_client, table)
    run(write_digest(log, store))  # digest 1
    time.sleep(1.1)  # S3 dates objects to the second
    written = session(boto3_client, table, 1)  # changed after digest 1
    time.sleep(1.1)
    _purge(endpoint, table, capsys, "--session", session(boto3_client, table, 1))  # digest 2
    digest = run(write_digest(log, store))  # digest 3: "since" is digest 1, not the purge
    assert written in {h.session_id for h in digest.heads}


def _team(client: Any, table: str) -> str:
    sid = f"team-{uuid.uuid4().hex[:6]}"
    for user, text in (("alice", "alice: my SSN is 078-05-1120"), ("bob", "bob: hi"),
                       ("alice", "alice: thanks")):
        run(DynamoDBSession(sid, client, table, user_id=user).add_items([msg(text)]))
    return sid


def test_erasing_one_users_content_verifies_clean_and_unsigned_erasure_is_caught(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, store: DigestStore,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sid = _team(boto3_client, table)
    anchor(endpoint, table, capsys)
    out = _purge(endpoint, table, capsys, "--user", "alice", "--shared", "content")
    assert "erased the content of 'alice' in 1 sessions" in out
    (record,) = store.load().purges[sid]
    assert (record.mode, record.through, record.user_sha256) == (
        "content", 3, user_sha256("alice"))
    assert "alice" not in str(record.to_json())  # the user only as a digest
    code, text = verify(endpoint, table, capsys, sid)
    assert code == 0, text
    assert text == (f"OK      {sid}: 3 events, seq 1..3, hash chain intact; anchored at seq 3 "
                    f"(digest 1); content of seq 1, 3 erased by purge at {record.at} "
                    "(digest 2)")
    # a table writer erases bob's content the same way, but cannot sign a record of it
    run(erase_user_content(wrap_client(boto3_client), table, sid, "bob"))
    code, text = verify(endpoint, table, capsys, sid)
    assert code == 1
    assert text == (f"BROKEN  {sid}: seq 2: its content was erased without a signed purge "
                    "record (a table writer removed it; a convlog purge signs what it erases)")


def test_a_purge_racing_an_anchor_run_for_one_digest_number_keeps_the_chain(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, store: DigestStore,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sid, erased = session(boto3_client, table, 2), session(boto3_client, table, 1)
    log = EventLog(boto3_client, table)
    run(write_digest(log, store))  # digest 1
    both_saw = store.latest_link()  # both writers read digest 1 as the newest
    store.write([], link=both_saw, purges=session_records({erased: 1}, by="ops"))
    run(DynamoDBSession(sid, boto3_client, table).add_items([msg("m3")]))
    raced = run(changed_heads(log, None))
    store.write([h for h in raced if h.session_id == sid], link=both_saw)  # also number 2
    assert run(write_digest(log, store)).number == 3  # chained to one of the two
    anchors = store.load()
    assert anchors.problem is None and anchors.digests == 4
    assert anchors.purges[erased][0].digest == 2
    assert {h.seq for h in anchors.heads[sid]} == {2, 3}  # seq 3 maybe twice: harmless
    assert verify(endpoint, table, capsys, sid)[0] == 0
    forked = Link(1, "0" * 64, "")  # a third number 2 naming another predecessor
    store.write([], link=forked)
    assert store.load().problem == "the digests numbered 2 name different predecessors"


def test_a_purge_whose_record_cannot_be_signed_erases_nothing(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, store: DigestStore,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    sid = session(boto3_client, table, 2)
    before = [i for i in scan(boto3_client, table) if key_of(i)[0] == session_pk(sid)]
    monkeypatch.setenv("CONVLOG_SIGNING_KEY", str(uuid.uuid4()))  # a key it may not use
    result = cli(capsys, endpoint, table, "purge", "--session", sid, "--yes")
    assert result.code != 0 and "kms:Sign failed" in result.err
    assert [i for i in scan(boto3_client, table) if key_of(i)[0] == session_pk(sid)] == before
