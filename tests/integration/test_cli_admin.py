"""``convlog sessions``, ``rebuild`` and ``purge`` against the moto server, with projections."""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import pytest
from cli_helpers import cli, count_cli_clients, key_of, run, scan, tool_turn

from convlog.local import EmbeddedEndpoint
from convlog.pump import StreamPump
from eventstore import DynamoDBSession


def _project(endpoint: EmbeddedEndpoint, client: Any, table: str) -> int:
    """Deliver the stream to the projector, as the event source mapping would."""
    from stream_handlers.projector import build_handler

    pump = StreamPump(build_handler(client, table), table, dynamodb=client,
                      streams=endpoint.client("dynamodbstreams"))
    return pump.drain()


def _write(client: Any, table: str, user: str, turns: list[str], tag: str) -> str:
    sid = f"{user}-{tag}-{uuid.uuid4().hex[:6]}"
    session = DynamoDBSession(sid, client, table, user_id=user)

    async def go() -> None:
        for n, city in enumerate(turns):
            await session.add_items(tool_turn(n, city, call_id=f"{sid}-{n}"))

    run(go())
    return sid


def _is_view(item: dict[str, Any]) -> bool:
    pk, sk = key_of(item)
    return pk.startswith("TOOL#") or sk == "META" or sk.startswith("SNAPSHOT")


def _is_session_view(item: dict[str, Any]) -> bool:
    return _is_view(item) and not key_of(item)[0].startswith("TOOL#")


def _live(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items that are not purge tombstones (content-free, they stay for 25 h)."""
    return [i for i in items if "purged" not in i]


@pytest.fixture
def world(endpoint: EmbeddedEndpoint, boto3_client: Any, table: str) -> dict[str, Any]:
    """Two users: alice (3 sessions, tool calls) and bob (1 session), all projected."""
    alice = [_write(boto3_client, table, "alice", [c], f"s{i}")
             for i, c in enumerate(["Paris", "Rome", "Oslo"])]
    bob = [_write(boto3_client, table, "bob", ["Lima", "Paris"], "s0")]
    assert _project(endpoint, boto3_client, table) > 0
    return {"alice": alice, "bob": bob}


def test_sessions_lists_newest_first_in_pages(
    endpoint: EmbeddedEndpoint, table: str, world: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    first = cli(capsys, endpoint, table, "sessions", "--user", "alice", "--limit", "2")
    assert first.code == 0
    lines = first.out.strip().splitlines()
    assert lines[0].split() == ["SESSION", "BRANCH", "LAST", "ACTIVE", "ITEMS", "TITLE"]
    assert [line.split()[0] for line in lines[1:3]] == world["alice"][::-1][:2]
    assert lines[1].split()[1] == "main"
    assert lines[1].split()[3] == "4" and "weather in Oslo? (0)" in lines[1]
    cursor = lines[3].split("--cursor ")[1]
    second = cli(capsys, endpoint, table, "sessions", "--user", "alice", "--limit", "2",
                 "--cursor", cursor, "--format", "json")
    doc = json.loads(second.out)
    assert [s["session_id"] for s in doc["sessions"]] == [world["alice"][0]]
    assert doc["next_cursor"] is None
    none = cli(capsys, endpoint, table, "sessions", "--user", "carol")
    assert none.code == 0 and "no sessions for user 'carol'" in none.out
    bad = cli(capsys, endpoint, table, "sessions", "--user", "bob", "--cursor", cursor)
    assert bad.code == 2 and "another user" in bad.err


def test_purge_user_removes_every_item_of_their_sessions_only(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, world: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = scan(boto3_client, table)
    alice_pks = {f"SESSION#{s}" for s in world["alice"]}

    def alice_owned(item: dict[str, Any]) -> bool:
        return key_of(item)[0] in alice_pks or item.get("session", {}).get("S") in world["alice"]

    owned = [i for i in before if alice_owned(i)]
    kinds = {key_of(i)[1].split("#")[0] for i in owned}
    assert {"EVENT", "META", "SNAPSHOT", "ARGS"} <= kinds
    result = cli(capsys, endpoint, table, "purge", "--user", "alice", "--yes")
    assert result.code == 0, result.err
    # the tool-cache entries' owner records in the sessions' partitions count as items
    records = [i for i in owned if key_of(i)[1].startswith("CACHE#")]
    assert records and f"deleted {len(owned)} items of 3 sessions" in result.out
    tombstones = [i for i in scan(boto3_client, table) if "purged" in i]
    assert sorted(key_of(i)[0] for i in tombstones) == sorted(2 * list(alice_pks))
    assert all(set(i) == {"pk", "sk", "purged", "seq", "ttl"} for i in tombstones)
    after = _live(scan(boto3_client, table))
    assert not [i for i in after if alice_owned(i)]
    assert not [i for i in after if i.get("user_id", {}).get("S") == "alice"]
    others = sorted((i for i in before if not alice_owned(i)), key=key_of)
    assert sorted(after, key=key_of) == others
    assert any(key_of(i)[0].startswith("SESSION#bob") for i in after)
    again = cli(capsys, endpoint, table, "purge", "--user", "alice", "--yes")
    assert again.code == 1 and "nothing to purge" in again.out


def test_purge_session_asks_and_a_no_deletes_nothing(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, world: dict[str, Any],
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = world["bob"][0]
    before = scan(boto3_client, table)
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    refused = cli(capsys, endpoint, table, "purge", "--session", target)
    assert refused.code == 1 and "[y/N]" in refused.out and "nothing deleted" in refused.out
    assert sorted(scan(boto3_client, table), key=key_of) == sorted(before, key=key_of)
    monkeypatch.setattr("sys.stdin", io.StringIO("yes\n"))
    done = cli(capsys, endpoint, table, "purge", "--session", target)
    assert done.code == 0
    left = _live(scan(boto3_client, table))
    assert not [i for i in left if key_of(i)[0] == f"SESSION#{target}"]
    assert not [i for i in left if i.get("session", {}).get("S") == target]
    assert len(left) == len([i for i in before if key_of(i)[0] != f"SESSION#{target}"
                             and i.get("session", {}).get("S") != target])


def test_purge_deletes_in_batches_of_25(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    sid = f"big-{uuid.uuid4().hex[:6]}"
    session = DynamoDBSession(sid, boto3_client, table, user_id="dave")

    async def go() -> None:
        for n in range(60):
            await session.add_items([{"role": "user", "content": f"m{n}"}])

    run(go())
    counters = count_cli_clients(monkeypatch)
    result = cli(capsys, endpoint, table, "purge", "--session", sid, "--yes")
    assert result.code == 0 and "deleted 60 items of 1 sessions (60 events)" in result.out
    assert counters[0].counts["BatchWriteItem"] == 3  # 25 + 25 + 10


def test_rebuild_all_restores_deleted_views_identically(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, world: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    projected = sorted((i for i in scan(boto3_client, table) if _is_view(i)), key=key_of)
    assert len(projected) >= 4 + 4 + 3
    for item in projected:
        boto3_client.delete_item(TableName=table, Key={"pk": item["pk"], "sk": item["sk"]})
    assert not [i for i in scan(boto3_client, table) if _is_view(i)]
    result = cli(capsys, endpoint, table, "rebuild", "--all")
    assert result.code == 0, result.err
    assert "rebuilt the views of 4 sessions from 5 events" in result.out
    # Session views come back byte for byte. Tool-cache entries do not: they are dated
    # by the stream's clock, which a rebuild from the table does not have.
    sessions_only = [i for i in projected if _is_session_view(i)]
    rebuilt = sorted((i for i in scan(boto3_client, table) if _is_view(i)), key=key_of)
    assert rebuilt == sessions_only
    again = cli(capsys, endpoint, table, "rebuild", "--all")
    assert again.code == 0
    assert sorted((i for i in scan(boto3_client, table) if _is_view(i)),
                  key=key_of) == sessions_only


def test_rebuild_one_session_with_reset_recomputes_from_seq_1(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, world: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    sid = world["bob"][0]
    views = sorted((i for i in scan(boto3_client, table)
                    if key_of(i)[0] == f"SESSION#{sid}" and _is_view(i)), key=key_of)
    boto3_client.update_item(
        TableName=table, Key={"pk": {"S": f"SESSION#{sid}"}, "sk": {"S": "META"}},
        UpdateExpression="SET title = :t", ExpressionAttributeValues={":t": {"S": "stale"}},
    )
    assert cli(capsys, endpoint, table, "rebuild", sid).code == 0  # views current: no change
    meta = boto3_client.get_item(TableName=table, Key={"pk": {"S": f"SESSION#{sid}"},
                                                       "sk": {"S": "META"}})["Item"]
    assert meta["title"]["S"] == "stale"
    result = cli(capsys, endpoint, table, "rebuild", sid, "--reset")
    assert result.code == 0 and "rebuilt the views of 1 sessions from 2 events" in result.out
    after = sorted((i for i in scan(boto3_client, table)
                    if key_of(i)[0] == f"SESSION#{sid}" and _is_view(i)), key=key_of)
    assert after == views


def test_rebuild_unknown_projector_is_one_line(
    endpoint: EmbeddedEndpoint, table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    result = cli(capsys, endpoint, table, "rebuild", "--all", "--projector", "nope:factory")
    assert result.code == 2 and "cannot load projector 'nope:factory'" in result.err


def test_rebuild_all_shows_progress_on_long_runs(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def go() -> None:
        for n in range(21):
            await DynamoDBSession(f"p{n:02d}", boto3_client, table).add_items(
                [{"role": "user", "content": str(n)}])

    run(go())
    result = cli(capsys, endpoint, table, "rebuild", "--all")
    assert result.code == 0 and "rebuilt the views of 21 sessions from 21 events" in result.out
    bars = result.err.strip().splitlines()
    assert len(bars) == 1  # not a terminal: the final state, once, as plain text
    assert bars[0].startswith("rebuild ") and "21/21 sessions" in bars[0]
    assert "100%" in bars[0] and "sessions/s" in bars[0] and " eta " in bars[0]
    snapshots = [i for i in scan(boto3_client, table) if key_of(i)[1] == "SNAPSHOT"]
    assert len(snapshots) == 21


def test_purge_retries_unprocessed_items(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fault injection: the first BatchWriteItem answers 'all unprocessed' without acting."""
    from botocore.awsrequest import AWSResponse
    from conftest import RequestCounter

    import convlog.cli as cli_module

    sid = f"retry-{uuid.uuid4().hex[:6]}"
    session = DynamoDBSession(sid, boto3_client, table)

    async def go() -> None:
        for n in range(10):
            await session.add_items([{"role": "user", "content": f"m{n}"}])

    run(go())
    real = cli_module.make_client
    counters: list[RequestCounter] = []

    class _Raw:
        def __init__(self, body: bytes) -> None:
            self.body = body

        def stream(self, **_: Any) -> Any:
            yield self.body

    def flaky(service: str, url: str | None, region: str | None) -> Any:
        client = real(service, url, region)
        counters.append(RequestCounter(client))
        state = {"failed": False}

        def unprocessed(request: Any, **_: Any) -> AWSResponse | None:
            target = request.headers.get("X-Amz-Target", b"")
            target = target.decode() if isinstance(target, bytes) else target
            if not target.endswith("BatchWriteItem") or state["failed"]:
                return None
            state["failed"] = True
            body = json.dumps({"UnprocessedItems": json.loads(request.body)["RequestItems"]})
            return AWSResponse(request.url, 200, {}, _Raw(body.encode()))

        client.meta.events.register("before-send.dynamodb", unprocessed)
        return client

    monkeypatch.setattr(cli_module, "make_client", flaky)
    result = cli(capsys, endpoint, table, "purge", "--session", sid, "--yes")
    assert result.code == 0 and "deleted 10 items" in result.out
    assert counters[0].counts["BatchWriteItem"] == 2
    assert not _live([i for i in scan(boto3_client, table)
                      if key_of(i)[0] == f"SESSION#{sid}"])
