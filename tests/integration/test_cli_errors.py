"""Issue 12, items 2 and 3: one-line errors with exit 2, and no wrong answers.

Each CLI case a new user hit is run in-process against the moto server: a usage or
storage problem is one line on stderr (no traceback) and exit 2; a question the CLI
cannot answer is an error, not a made-up answer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import Result, cli, run, scan

from convlog.cli import main
from convlog.local import EmbeddedEndpoint
from eventstore import DynamoDBSession

CONVLOG = str(Path(sys.executable).with_name("convlog"))


def _one_line(result: Result, code: int = 2) -> str:
    assert result.code == code, (result.out, result.err)
    assert "Traceback" not in result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    return lines[0]


def _main(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def _export(client: Any, table: str, endpoint: EmbeddedEndpoint,
            capsys: pytest.CaptureFixture[str], path: Path) -> str:
    sid = f"exp-{uuid.uuid4().hex[:6]}"
    session = DynamoDBSession(sid, client, table, user_id="ann")
    run(session.add_items([{"role": "user", "content": "one"}]))
    run(session.add_items([{"role": "assistant", "content": "two"}]))
    out = cli(capsys, endpoint, table, "replay", sid, "--format", "jsonl").out
    path.write_text(out, encoding="utf-8")
    return sid


# ---- item 2: one line on stderr, exit 2 ----

def test_import_of_a_missing_file(
    endpoint: EmbeddedEndpoint, table: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    line = _one_line(cli(capsys, endpoint, table, "import", str(tmp_path / "nope.jsonl")))
    assert line.startswith("convlog import: error: ") and "nope.jsonl" in line
    assert "no such file" in line.lower()


def test_import_of_a_directory(
    endpoint: EmbeddedEndpoint, table: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    line = _one_line(cli(capsys, endpoint, table, "import", str(tmp_path)))
    assert str(tmp_path) in line and "directory" in line.lower()


@pytest.mark.parametrize(
    ("content", "needle"),
    [("this is not json\n", "line 1 is not JSON"),
     ('{"v": 1}\n{oops\n', "line 2 is not JSON"),
     (b"\xff\xfe\x00binary", "not UTF-8")],
)
def test_import_of_a_file_that_is_not_jsonl(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str,
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str | bytes, needle: str,
) -> None:
    path = tmp_path / "bad.jsonl"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    line = _one_line(cli(capsys, endpoint, table, "import", str(path)))
    assert needle in line and "bad.jsonl" in line
    assert scan(boto3_client, table) == []


@pytest.mark.parametrize("url", ["localhost:4566", "127.0.0.1:8000", "ftp://127.0.0.1:21"])
def test_endpoint_url_without_an_http_scheme(
    capsys: pytest.CaptureFixture[str], url: str
) -> None:
    line = _one_line(_main(capsys, "verify", "s1", "--endpoint-url", url))
    assert url in line and "http://" in line


def test_endpoint_url_from_the_environment_is_checked_too(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "localhost:4566")
    line = _one_line(_main(capsys, "verify", "s1"))
    assert "AWS_ENDPOINT_URL_DYNAMODB" in line and "localhost:4566" in line


@pytest.mark.parametrize("port", ["99999", "-1", "65536"])
def test_serve_on_a_port_out_of_range(capsys: pytest.CaptureFixture[str], port: str) -> None:
    line = _one_line(_main(capsys, "serve", "--port", port))
    assert line == f"convlog serve: error: --port must be between 0 and 65535, got {port}"


def test_unknown_option_prints_the_verbs_usage(capsys: pytest.CaptureFixture[str]) -> None:
    result = _main(capsys, "replay", "x", "--bogus")
    assert result.code == 2 and result.out == ""
    assert result.err.startswith("usage: convlog replay ")
    assert result.err.strip().splitlines()[-1] == (
        "convlog replay: error: unrecognized arguments: --bogus"
    )


# ---- item 3: no wrong answers ----

def test_rebuild_of_an_unknown_session_is_not_a_success(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    result = cli(capsys, endpoint, table, "rebuild", "nobody")
    line = _one_line(result, code=1)
    assert line == f"convlog rebuild: session 'nobody' has no events in {table!r}"
    assert "rebuilt" not in result.out
    assert scan(boto3_client, table) == []


def test_import_into_a_missing_table_is_one_line_and_claims_nothing(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str,
    capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    export = tmp_path / "export.jsonl"
    _export(boto3_client, table, endpoint, capsys, export)
    missing = f"missing-{uuid.uuid4().hex[:6]}"
    result = cli(capsys, endpoint, missing, "import", str(export))
    line = _one_line(result)
    assert missing in line and "does not exist" in line
    assert "imported" not in result.out
    assert missing not in boto3_client.list_tables()["TableNames"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [(["--region", "eu-west-1"], "--region"),
     (["--endpoint-url", "http://127.0.0.1:4566"], "--endpoint-url")],
)
def test_serve_rejects_connection_options_it_cannot_honour(
    capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    line = _one_line(_main(capsys, "serve", "--port", "0", *args))
    assert line.startswith("convlog serve: error: ") and needle in line


def test_replay_at_a_seq_beyond_the_head_is_an_error(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sid = f"head-{uuid.uuid4().hex[:6]}"
    run(DynamoDBSession(sid, boto3_client, table).add_items([{"role": "user", "content": "a"}]))
    line = _one_line(cli(capsys, endpoint, table, "replay", sid, "--at-seq", "99"))
    assert line == (f"convlog replay: error: --at-seq 99 is beyond the newest event of {sid!r} "
                    "(seq 1)")
    ok = cli(capsys, endpoint, table, "replay", sid, "--at-seq", "1", "--format", "json")
    assert ok.code == 0 and json.loads(ok.out)["at_seq"] == 1


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    result = _main(capsys, "--version")
    assert result.code == 0
    assert result.out.strip() == f"convlog {version('convlog')}"


def test_demo_ignores_serves_exports_and_says_so(
    endpoint: EmbeddedEndpoint, boto3_client: Any
) -> None:
    """With `convlog serve`'s exports in the shell, the demo does not write into that table.

    A separate process: moto's state is per process, so an in-process demo would share
    it with the test's endpoint.
    """
    table = f"dev-{uuid.uuid4().hex[:6]}"
    env = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}
    env.update(AWS_ENDPOINT_URL_DYNAMODB=endpoint.url, CONVLOG_TABLE=table)
    proc = subprocess.run([CONVLOG, "demo"], capture_output=True, text=True, timeout=120,
                          env=env)
    result = Result(proc.returncode, proc.stdout, proc.stderr)
    note = _one_line(result, code=0)
    assert note == (f"convlog demo: AWS_ENDPOINT_URL_DYNAMODB={endpoint.url} is ignored; the demo "
                    f"runs on its own embedded endpoint (pass --endpoint-url {endpoint.url} to "
                    "write into that one)")
    first = result.out.splitlines()[0]
    assert first.startswith("convlog demo: embedded DynamoDB endpoint http://127.0.0.1:")
    assert endpoint.url not in first
    assert table not in boto3_client.list_tables()["TableNames"]
    # the tool-cache lines credit the call that ran the function, not the cache hit
    cache = result.out.split("== tool cache (scope travel")[1].split("==")[1]
    assert "call_weather_1 ran the function; call_weather_2 was served from the cache" in cache
    assert "call call_weather_2, a cache hit;" in cache
