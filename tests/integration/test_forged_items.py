"""A table writer's malformed items never surface as a bare Python exception.

The threat model lets a table writer put anything in the partitions its policy allows:
an attribute of the wrong type (``{"S": ...}`` where a number belongs), a number no
writer makes (``"1.5"``, ``"1E+40"``, ``"-3"``), an attribute removed. The documented
outcomes: a malformed *event* is a ``CorruptEventError`` on every session path and a
BROKEN session for ``convlog verify``; a malformed *view* (META, SNAPSHOT, a branch
registry item, a tool-cache entry) is ignored (reads fold the events; a bad cache entry
is a miss); the CLI exits with a one-line message, never a traceback.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import pytest
from cli_helpers import cli, run, tool_turn
from projection_support import make_pump
from test_integrity_views import msg, projected

from convlog.anchor_run import create_anchor_resources
from convlog.console.service import ConsoleService
from convlog.local import EmbeddedEndpoint
from eventstore import DynamoDBSession, ToolCache, list_sessions
from eventstore.errors import ConvlogError, CorruptEventError, InvalidInputError
from eventstore.idempotency import derive_token
from eventstore.keys import META_SK, SNAPSHOT_SK, session_pk
from stream_handlers.projector import build_handler

Forgery = tuple[str, dict[str, Any] | None]  # attribute, value (None: removed)


def forge(client: Any, table: str, key: dict[str, Any], attr: str, value: Any) -> None:
    """Set (or remove) one attribute of an item, as a table writer can."""
    if value is None:
        client.update_item(TableName=table, Key=key, UpdateExpression="REMOVE #a",
                           ExpressionAttributeNames={"#a": attr})
    else:
        client.update_item(TableName=table, Key=key, UpdateExpression="SET #a = :v",
                           ExpressionAttributeNames={"#a": attr},
                           ExpressionAttributeValues={":v": value})


def drain_watching(endpoint: EmbeddedEndpoint, table: str) -> tuple[Any, list[Exception]]:
    """Drain the stream through the projector (one retry), keeping what it raised."""
    handler, raised = build_handler(endpoint.client("dynamodb"), table), []

    def watched(event: dict[str, Any], context: Any) -> Any:
        try:
            return handler(event, context)
        except Exception as exc:
            raised.append(exc)
            raise

    pump = make_pump(endpoint, table, watched, max_retries=1)
    pump.drain()
    return pump, raised


def key(sid: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": session_pk(sid)}, "sk": {"S": sk}}


def one_line(result: Any) -> None:
    """A CLI outcome a person can read: no traceback, one line on stderr at most."""
    assert "Traceback" not in result.out + result.err
    assert len(result.err.strip().splitlines()) <= 1, result.err


BAD_NUMBERS: list[dict[str, Any]] = [
    {"S": "3"}, {"N": "1.5"}, {"N": "1E+40"}, {"N": "-3"}, {"BOOL": True},
]

EVENT_FORGERIES: list[Forgery] = [
    *(("seq", v) for v in BAD_NUMBERS), ("seq", None), ("hash", None), ("hash", {"N": "1"}),
    ("ttl", {"S": "soon"}), ("ttl", {"N": "1.5"}), ("ttl", {"N": "1E+40"}),
    ("v", {"N": "1.5"}), ("v", {"S": "2"}), ("token", {"N": "1"}), ("type", None),
    ("parts", {"N": "1.5"}), ("parts", {"N": "1E+40"}),
]


@pytest.mark.parametrize(("attr", "value"), EVENT_FORGERIES)
def test_a_forged_newest_event_is_a_corrupt_event_on_every_path(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str,
    capsys: pytest.CaptureFixture[str], attr: str, value: Any,
) -> None:
    """The newest event (one the snapshot does not cover) malformed: every read raises
    ``CorruptEventError``, a write raises it or appends after the head without reading the
    event (never a bare exception, never a write at a seq no writer makes); ``verify``
    says BROKEN; ``replay``/``rebuild``/``sessions`` exit with one line at most."""
    sid = projected(endpoint, boto3_client, table)
    run(DynamoDBSession(sid, boto3_client, table, user_id="ann").add_items([msg("m4")]))
    forge(boto3_client, table, key(sid, "EVENT#000000000004"), attr, value)
    for call in (lambda s: s.get_items(), lambda s: s.get_items(limit=1),
                 lambda s: s.pop_item()):
        with pytest.raises(CorruptEventError):
            run(call(DynamoDBSession(sid, boto3_client, table, user_id="ann")))
    for call in (lambda s: s.add_items([msg("after")]), lambda s: s.list_branches(),
                 lambda s: s.add_items([msg("again")], idempotency_key="retry-1")):
        with contextlib.suppress(CorruptEventError):
            run(call(DynamoDBSession(sid, boto3_client, table, user_id="ann")))
    sks = [i["sk"]["S"] for i in boto3_client.query(
        TableName=table, KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": session_pk(sid)}})["Items"]]
    assert all(sk.startswith("EVENT#0000000000") or not sk.startswith("EVENT#")
               for sk in sks), sks
    verified = cli(capsys, endpoint, table, "verify", sid)
    assert verified.code == 1 and verified.out.startswith(f"BROKEN  {sid}"), verified
    one_line(verified)
    for verb in (("verify", sid, "--deep"), ("replay", sid), ("rebuild", sid),
                 ("sessions", "--user", "ann")):
        one_line(cli(capsys, endpoint, table, *verb))
    service = ConsoleService(boto3_client, table)
    try:
        timeline = run(service.timeline(sid))
    except ConvlogError:
        pass
    else:
        assert timeline.verify.problem is not None


VIEW_FORGERIES: list[tuple[str, str, dict[str, Any] | None]] = [
    *((META_SK, "seq", v) for v in BAD_NUMBERS),
    *((META_SK, "item_count", v) for v in BAD_NUMBERS),
    (META_SK, "ttl", {"S": "soon"}), (META_SK, "ttl", {"N": "1.5"}),
    (META_SK, "usage", {"L": [{"S": "1"}]}), (META_SK, "usage", {"S": "1"}),
    (META_SK, "usage", {"L": [{"N": "1.5"}] * 4}), (META_SK, "purged", {"S": "3"}),
    (META_SK, "last_active", None), (META_SK, "created", {"N": "1"}),
    *((SNAPSHOT_SK, "seq", v) for v in BAD_NUMBERS),
    (SNAPSHOT_SK, "ttl", {"S": "soon"}), (SNAPSHOT_SK, "ttl", {"N": "1.5"}),
    (SNAPSHOT_SK, "ttl", {"N": "1E+40"}), (SNAPSHOT_SK, "v", {"S": "3"}),
    (SNAPSHOT_SK, "v", {"N": "1.5"}), (SNAPSHOT_SK, "chunks", {"N": "1.5"}),
    (SNAPSHOT_SK, "chunks", {"S": "1"}), (SNAPSHOT_SK, "parts", {"N": "1.5"}),
    (SNAPSHOT_SK, "parts", {"S": "2"}), (SNAPSHOT_SK, "purged", {"S": "3"}),
    (SNAPSHOT_SK, "hash", None), (SNAPSHOT_SK, "hash", {"N": "1"}),
]


@pytest.mark.parametrize(("sk", "attr", "value"), VIEW_FORGERIES)
def test_a_forged_view_is_ignored_by_every_path(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str,
    capsys: pytest.CaptureFixture[str], sk: str, attr: str, value: Any,
) -> None:
    """A malformed META or SNAPSHOT: reads fold the events, writes go on, the projector
    drains without a failed record, and the CLI and console answer without a traceback."""
    sid = projected(endpoint, boto3_client, table)
    forge(boto3_client, table, key(sid, sk), attr, value)
    session = DynamoDBSession(sid, boto3_client, table, user_id="ann")
    assert run(session.get_items()) == [msg("m1"), msg("m2"), msg("m3")]
    assert run(DynamoDBSession(sid, boto3_client, table).get_items(limit=1)) == [msg("m3")]
    assert [b["branch_id"] for b in run(session.list_branches())] == ["main"]
    run(list_sessions(boto3_client, table, "ann"))
    for verb in (("verify", sid), ("verify", sid, "--deep"), ("replay", sid),
                 ("sessions", "--user", "ann"), ("usage", "--user", "ann")):
        one_line(cli(capsys, endpoint, table, *verb))
    run(ConsoleService(boto3_client, table).timeline(sid))
    assert run(session.pop_item()) == msg("m3")
    run(session.add_items([msg("m4")]))
    pump = make_pump(endpoint, table, max_retries=0, on_exhausted="stop")
    pump.drain()
    assert run(DynamoDBSession(sid, boto3_client, table).get_items()) == [
        msg("m1"), msg("m2"), msg("m4")]
    rebuilt = cli(capsys, endpoint, table, "rebuild", sid)
    one_line(rebuilt)
    assert rebuilt.code == 0, rebuilt
    deep = cli(capsys, endpoint, table, "verify", sid, "--deep")
    assert deep.code == 0 and "views agree with the log" in deep.out, deep


@pytest.mark.parametrize(("attr", "value"), [
    ("branch_id", None), ("branch_id", {"N": "1"}), ("branch_id", {"S": "../x"}),
    ("created", None), ("created", {"N": "1"}), ("deleted", {"S": "no"}),
])
def test_a_forged_branch_registry_item_is_ignored(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, attr: str, value: Any,
) -> None:
    """A ``BRANCH#`` item no writer made: not listed, not a branch to switch to."""
    sid = projected(endpoint, boto3_client, table)
    item = {**key(sid, "BRANCH#forged"), "branch_id": {"S": "forged"},
            "created": {"S": "2026-01-01T00:00:00.000Z"}, "from_turn": {"N": "1"}}
    boto3_client.put_item(TableName=table, Item=item)
    forge(boto3_client, table, key(sid, "BRANCH#forged"), attr, value)
    session = DynamoDBSession(sid, boto3_client, table, user_id="ann")
    assert [b["branch_id"] for b in run(session.list_branches())] == ["main"]
    with contextlib.suppress(InvalidInputError):  # "does not exist", unless well-formed
        run(session.switch_to_branch("forged"))
    assert run(session.get_items()) in ([], [msg("m1"), msg("m2"), msg("m3")])


@pytest.mark.parametrize(("attr", "value"), [
    ("hits", {"S": "1"}), ("hits", {"N": "1.5"}), ("hits", {"N": "1E+40"}),
    ("ttl", {"S": "soon"}), ("ttl", {"N": "1.5"}), ("created", {"N": "1"}),
    ("output", {"N": "1"}), ("output", {"S": "{not json"}), ("session", {"N": "1"}),
])
def test_a_forged_tool_entry_is_a_miss(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, attr: str, value: Any,
) -> None:
    """A malformed tool-cache entry: ``ToolCache.get`` misses, the console leaves it
    out, and the projector writes over it without a failed record."""
    sid = f"forged-{uuid.uuid4().hex[:8]}"
    writer = DynamoDBSession(sid, boto3_client, table, user_id="ann")
    run(writer.add_items(tool_turn(1, "Oslo")))
    make_pump(endpoint, table).drain()
    cache = ToolCache(boto3_client, table)
    entry = run(cache.get("get_weather", '{"city":"Oslo"}'))
    assert entry is not None and entry.output == "sunny in Oslo"
    forge(boto3_client, table, entry.key, attr, value)
    assert run(cache.get("get_weather", '{"city":"Oslo"}')) is None
    run(ConsoleService(boto3_client, table).tool_entries(sid))
    run(writer.add_items(tool_turn(2, "Oslo")))
    make_pump(endpoint, table, max_retries=0, on_exhausted="stop").drain()


@pytest.fixture
def digests(endpoint: EmbeddedEndpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh locked digest bucket and signing key, found by ``convlog`` in the env."""
    bucket = f"digests-{uuid.uuid4().hex[:10]}"
    key_id = create_anchor_resources(endpoint.client("s3"), endpoint.client("kms"), bucket)
    monkeypatch.setenv("CONVLOG_DIGEST_BUCKET", bucket)
    monkeypatch.setenv("CONVLOG_SIGNING_KEY", key_id)


@pytest.mark.parametrize(("sk", "attr", "value"), [
    ("EVENT#000000000003", "seq", {"S": "3"}), ("EVENT#000000000003", "seq", {"N": "1.5"}),
    ("EVENT#000000000003", "ttl", {"S": "soon"}), ("EVENT#000000000003", "hash", None),
    ("EVENT#zzz", "seq", {"N": "7"}),
])
def test_anchor_runs_past_a_forged_event_row_and_verify_names_it(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, digests: None,
    capsys: pytest.CaptureFixture[str], sk: str, attr: str, value: Any,
) -> None:
    """One tenant's forged row does not stop the anchor for every session."""
    good, sid = (projected(endpoint, boto3_client, table) for _ in range(2))
    if sk == "EVENT#zzz":
        boto3_client.put_item(TableName=table, Item=key(sid, sk))
    forge(boto3_client, table, key(sid, sk), attr, value)
    anchored = cli(capsys, endpoint, table, "anchor")
    one_line(anchored)
    assert anchored.code == 0, anchored
    assert cli(capsys, endpoint, table, "verify", good).code == 0
    broken = cli(capsys, endpoint, table, "verify", sid)
    one_line(broken)
    assert broken.code == 1 and broken.out.startswith(f"BROKEN  {sid}"), broken


@pytest.mark.parametrize(("attr", "value"), [
    ("v", {"S": "2"}), ("v", {"N": "1.5"}), ("v", None), ("seq", {"S": "2"}),
])
def test_purge_of_shared_content_with_a_forged_event_is_one_line(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, digests: None,
    capsys: pytest.CaptureFixture[str], attr: str, value: Any,
) -> None:
    """``purge --shared content`` over a session with a malformed event of the user: a
    one-line error (it crashed with a traceback on a ``v`` that is no whole number)."""
    sid = f"forged-{uuid.uuid4().hex[:8]}"
    run(DynamoDBSession(sid, boto3_client, table, user_id="ann").add_items([msg("a")]))
    run(DynamoDBSession(sid, boto3_client, table, user_id="bob").add_items([msg("b")]))
    forge(boto3_client, table, key(sid, "EVENT#000000000001"), attr, value)
    result = cli(capsys, endpoint, table, "purge", "--user", "ann", "--shared", "content",
                 "--yes")
    one_line(result)
    assert result.code == 2 and result.err.startswith("convlog purge: error: "), result


@pytest.mark.parametrize(("sk", "attr", "value"), [
    ("EVENT#000000000004", "seq", {"S": "4"}), ("EVENT#000000000004", "seq", {"N": "1E+40"}),
    ("EVENT#000000000004", "hash", None), ("EVENT#000000000004", "ttl", {"S": "soon"}),
    ("EVENT#000000000004", "v", {"N": "1.5"}), ("EVENT#000000000004", "parts", {"N": "1.5"}),
    ("EVENT#000000000004", "parts", {"N": "3"}), ("EVENT#000000000004", "obj", {"N": "1"}),
    ("EVENT#zzz", "seq", {"N": "4"}), ("EVENT#000000000004#0001", "seq", {"S": "4"}),
])
def test_the_projector_never_raises_on_a_forged_event_insert(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, sk: str, attr: str, value: Any,
) -> None:
    """A table writer's new row under ``EVENT#``: the handler reports or skips it (the
    session's views stay at the last event the chain proves); it never raises."""
    sid = projected(endpoint, boto3_client, table)
    item = boto3_client.get_item(TableName=table, Key=key(sid, "EVENT#000000000003"),
                                 ConsistentRead=True)["Item"]
    item = {**item, "sk": {"S": sk}, "seq": {"N": "4"}}
    if value is None:
        del item[attr]
    else:
        item[attr] = value
    boto3_client.put_item(TableName=table, Item=item)
    _, raised = drain_watching(endpoint, table)
    assert raised == []
    snapshot = boto3_client.get_item(TableName=table, Key=key(sid, SNAPSHOT_SK),
                                     ConsistentRead=True)["Item"]
    assert snapshot["seq"] == {"N": "3"}


@pytest.mark.parametrize("ttl", [{"N": "1.5"}, {"S": "soon"}, {"N": "1E+40"}, {"N": "-3"}])
def test_a_tombstone_with_a_forged_ttl_breaks_no_projection(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, ttl: dict[str, Any],
) -> None:
    """A META that looks like a purge tombstone but whose ``ttl`` is no whole number."""
    sid = projected(endpoint, boto3_client, table)
    forge(boto3_client, table, key(sid, META_SK), "purged", {"N": "3"})
    forge(boto3_client, table, key(sid, META_SK), "ttl", ttl)
    session = DynamoDBSession(sid, boto3_client, table, user_id="ann")
    run(session.add_items([msg("m4")]))
    pump, raised = drain_watching(endpoint, table)
    assert raised == [] and (pump.stats.retries, pump.stats.skipped) == (0, 0)
    snapshot = boto3_client.get_item(TableName=table, Key=key(sid, SNAPSHOT_SK),
                                     ConsistentRead=True)["Item"]
    assert snapshot["seq"] == {"N": "4"}
    assert run(session.get_items()) == [msg("m1"), msg("m2"), msg("m3"), msg("m4")]


FORGED_OBJECT = "sessions/forged/object"


@pytest.mark.parametrize(("obj", "ttl"), [
    ({"S": FORGED_OBJECT}, {"S": "soon"}), ({"S": FORGED_OBJECT}, {"N": "1.5"}),
    ({"S": FORGED_OBJECT}, {"N": "1E+40"}), ({"N": "1"}, None), ({"BOOL": True}, {"N": "1"}),
])
def test_the_sweeper_reads_past_a_forged_object_reference(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, bucket: str, s3_client: Any,
    capsys: pytest.CaptureFixture[str], obj: dict[str, Any], ttl: dict[str, Any] | None,
) -> None:
    """An item whose ``obj`` or ``ttl`` no writer makes: ``convlog sweep`` runs (it
    crashed on the ttl), and an object such an item names is kept, not deleted."""
    s3_client.put_object(Bucket=bucket, Key=FORGED_OBJECT, Body=b"x")
    item = {**key(f"forged-{uuid.uuid4().hex[:8]}", "EVENT#000000000001"), "obj": obj}
    boto3_client.put_item(TableName=table, Item={**item, **({"ttl": ttl} if ttl else {})})
    swept = cli(capsys, endpoint, table, "sweep", "--bucket", bucket, "--min-age", "0",
                "--dry-run")
    one_line(swept)
    assert swept.code == 0, swept
    assert (FORGED_OBJECT in swept.out) == ("S" not in obj), swept.out


@pytest.mark.parametrize("seq", [{"S": "2"}, {"N": "1.5"}, None])
def test_a_forged_row_carrying_a_retrys_token_is_a_corrupt_event(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, seq: dict[str, Any] | None,
) -> None:
    """Tokens derive from the idempotency key: a row that carries one and no whole seq
    makes the retry a ``CorruptEventError`` (it was a bare ``KeyError``/``ValueError``)."""
    sid = projected(endpoint, boto3_client, table)
    token = derive_token("retry-4", "add", [msg("m4")])
    forge(boto3_client, table, key(sid, "EVENT#000000000002"), "token", {"S": token})
    forge(boto3_client, table, key(sid, "EVENT#000000000002"), "seq", seq)
    session = DynamoDBSession(sid, boto3_client, table, user_id="ann")
    with pytest.raises(CorruptEventError):
        run(session.add_items([msg("m4")], idempotency_key="retry-4"))
