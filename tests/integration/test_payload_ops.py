"""Operating a payload bucket (issue 13): CLI purge, the console, and ``convlog sweep``.

Everything talks HTTP to the embedded moto server (DynamoDB, Streams and S3): the CLI
runs in-process with ``--bucket``, the console is served by uvicorn on 127.0.0.1.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from cli_helpers import cli
from faults import boto3_client_for
from test_payload_store import objects, project
from test_session_size_ttl import noise

from convlog.console.app import create_app
from convlog.console.server import ConsoleServer
from convlog.local import EmbeddedEndpoint
from eventstore import DynamoDBSession
from eventstore.errors import AccessDeniedError

BIG = {"role": "tool", "content": noise(600_000, seed=41)}


async def _big_session(client: Any, table: str, s3: Any, bucket: str, sid: str) -> None:
    session = DynamoDBSession(sid, client, table, s3_client=s3, bucket_name=bucket,
                              user_id="u-" + sid)
    await session.add_items([{"role": "user", "content": "the file, please"}])
    await session.add_items([BIG])


async def test_cli_purge_deletes_the_sessions_objects(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, s3_client: Any, bucket: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for sid in ("gone", "stays"):
        await _big_session(boto3_client, table, s3_client, bucket, sid)
    project(endpoint, table, bucket)
    assert len(objects(s3_client, bucket, "gone")) == 2  # the event's and the snapshot's
    result = cli(capsys, endpoint, table, "purge", "--session", "gone", "--yes",
                 "--bucket", bucket)
    assert result.code == 0, result.err
    assert objects(s3_client, bucket, "gone") == []
    assert "2 payload objects" in result.out
    assert len(objects(s3_client, bucket, "stays")) == 2


async def test_cli_purge_takes_the_bucket_from_the_environment(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, s3_client: Any, bucket: str,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    await _big_session(boto3_client, table, s3_client, bucket, "env-gone")
    monkeypatch.setenv("CONVLOG_BUCKET", bucket)
    result = cli(capsys, endpoint, table, "purge", "--session", "env-gone", "--yes")
    assert result.code == 0, result.err
    assert objects(s3_client, bucket, "env-gone") == []


async def test_console_reads_payloads_in_s3(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, s3_client: Any, bucket: str,
) -> None:
    await _big_session(boto3_client, table, s3_client, bucket, "console-big")
    project(endpoint, table, bucket)
    app = create_app(boto3_client, table, admin=True, s3_client=s3_client,
                     bucket_name=bucket)
    with ConsoleServer(app) as server:
        base = server.url + "api/"
        sid = {"session_id": "console-big"}
        timeline = requests.get(base + "timeline", params=sid, timeout=60).json()
        assert timeline["verify"]["ok"] is True, timeline
        assert [e["status"] for e in timeline["events"]] == ["ok", "ok"]
        assert timeline["events"][1]["change"]["count_after"] == 2
        items = requests.get(base + "items", params=sid, timeout=60).json()
        assert items["items"] == [{"role": "user", "content": "the file, please"}, BIG]
        verify = requests.get(base + "verify", params=sid, timeout=60).json()
        assert verify["ok"] is True and verify["events"] == 2
        export = requests.get(base + "export", params=sid, timeout=60)
        assert export.status_code == 200 and BIG["content"] in export.text
        plan = requests.post(base + "admin/purge/plan", json=sid, timeout=60).json()
        done = requests.post(base + "admin/purge", timeout=60,
                             json={**sid, "confirm": plan["confirm"]})
        assert done.status_code == 200, done.text
    assert objects(s3_client, bucket, "console-big") == []


async def test_console_without_the_bucket_says_so(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, s3_client: Any, bucket: str,
) -> None:
    await _big_session(boto3_client, table, s3_client, bucket, "console-nobucket")
    with ConsoleServer(create_app(boto3_client, table)) as server:
        verify = requests.get(server.url + "api/verify", timeout=60,
                              params={"session_id": "console-nobucket"}).json()
        assert verify["ok"] is False
        assert "bucket" in verify["problem"]["message"]


def _lost_commit(proxy: Any, boto3_client: Any, table: str, s3: Any, bucket: str) -> None:
    import asyncio

    async def go() -> None:
        await _big_session(boto3_client, table, s3, bucket, "race")
        failing = boto3_client_for(proxy.url, retries={"max_attempts": 1})
        loser = DynamoDBSession("race", failing, table, s3_client=s3, bucket_name=bucket)
        proxy.error("PutItem", "AccessDeniedException")
        with pytest.raises(AccessDeniedError):
            await loser.add_items([{"role": "tool", "content": noise(600_000, seed=42)}])

    asyncio.run(go())


def test_cli_sweep_dry_run_then_sweep(
    endpoint: EmbeddedEndpoint, proxy: Any, boto3_client: Any, table: str, s3_client: Any,
    bucket: str, capsys: pytest.CaptureFixture[str],
) -> None:
    _lost_commit(proxy, boto3_client, table, s3_client, bucket)
    before = objects(s3_client, bucket, "race")
    assert len(before) == 2
    young = cli(capsys, endpoint, table, "sweep", "--bucket", bucket)
    assert young.code == 0, young.err
    assert "0 orphans" in young.out and objects(s3_client, bucket, "race") == before
    dry = cli(capsys, endpoint, table, "sweep", "--bucket", bucket, "--min-age", "0",
              "--dry-run")
    assert dry.code == 0, dry.err
    assert "1 orphans" in dry.out and "would delete" in dry.out
    assert objects(s3_client, bucket, "race") == before
    done = cli(capsys, endpoint, table, "sweep", "--bucket", bucket, "--min-age", "0")
    assert done.code == 0, done.err
    assert "deleted 1 orphans" in done.out
    (kept,) = objects(s3_client, bucket, "race")
    assert kept in before

    async def read() -> list[Any]:
        return await DynamoDBSession("race", boto3_client, table, s3_client=s3_client,
                                     bucket_name=bucket).get_items()

    import asyncio

    assert asyncio.run(read())[-1] == BIG


def test_cli_sweep_errors_are_one_line(
    endpoint: EmbeddedEndpoint, table: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CONVLOG_BUCKET", raising=False)
    missing = cli(capsys, endpoint, table, "sweep")
    assert missing.code == 2 and missing.err.count("\n") == 1
    assert "--bucket" in missing.err
    absent = cli(capsys, endpoint, table, "sweep", "--bucket", "no-such-bucket-xyz")
    assert absent.code == 2 and absent.err.count("\n") == 1
    assert "no-such-bucket-xyz" in absent.err
