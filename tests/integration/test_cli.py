"""convlog verbs in-process against the moto server: help, errors, replay, import, verify."""

from __future__ import annotations

import itertools
import json
import time
import uuid
from typing import Any

import pytest
from cli_helpers import Result, cli, run, scan

from convlog.cli import main
from convlog.local import EmbeddedEndpoint, free_port
from eventstore import DynamoDBSession
from eventstore.events import parse_event

VERBS = ["demo", "serve", "replay", "verify", "import", "sessions", "rebuild", "purge", "sweep"]


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help_with_an_example(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([verb, "--help"]) == 0
    out = capsys.readouterr().out
    assert "example:" in out and f"convlog {verb}" in out
    for option in ("--table", "--endpoint-url", "--region"):
        assert option in out


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay"]) == 2
    assert main(["verify", "s1", "--all"]) == 2
    assert main(["replay", "s", "--at-seq", "1", "--as-of", "2026-01-01"]) == 2


def _one_line_error(result: Result) -> str:
    assert result.code == 2
    assert result.out == ""
    assert "Traceback" not in result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    return lines[0]


def test_missing_table_is_one_line(
    endpoint: EmbeddedEndpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    for verb in (["replay", "s1"], ["verify", "s1"], ["verify", "--all"],
                 ["purge", "--user", "u", "--yes"]):
        line = _one_line_error(cli(capsys, endpoint, "no-such-table", *verb))
        assert "no-such-table" in line and "does not exist" in line


def test_unreachable_endpoint_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["verify", "s1", "--endpoint-url", url]) == 2
    err = capsys.readouterr().err
    assert "did not answer" in err and url in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_refused_credentials_is_one_line(
    endpoint: EmbeddedEndpoint, table: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fault injection: the endpoint answers 400 UnrecognizedClientException."""
    from botocore.awsrequest import AWSResponse

    import convlog.cli as cli_module

    real = cli_module.make_client

    class _Raw:
        def __init__(self, body: bytes) -> None:
            self.body = body

        def stream(self, **_: Any) -> Any:
            yield self.body

    def refusing(service: str, url: str | None, region: str | None) -> Any:
        client = real(service, url, region)
        body = json.dumps({"__type": "com.amazon.coral.service#UnrecognizedClientException",
                           "message": "The security token included in the request is invalid."})

        def refuse(request: Any, **_: Any) -> AWSResponse:
            return AWSResponse(request.url, 400, {"x-amzn-requestid": "x"}, _Raw(body.encode()))

        client.meta.events.register("before-send.dynamodb", refuse)
        return client

    monkeypatch.setattr(cli_module, "make_client", refusing)
    line = _one_line_error(cli(capsys, endpoint, table, "verify", "s1"))
    assert "credentials refused" in line and "UnrecognizedClientException" in line


def test_env_defaults_for_table_and_endpoint(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    run(DynamoDBSession("env-s", boto3_client, table).add_items([{"role": "user", "content": "x"}]))
    monkeypatch.setenv("CONVLOG_TABLE", table)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", endpoint.url)
    assert main(["verify", "env-s"]) == 0
    assert "OK      env-s: 1 events" in capsys.readouterr().out


def _history(client: Any, table: str) -> tuple[str, list[tuple[int, str, list[Any]]]]:
    """Write a session step by step; record (seq, time, get_items) after each step."""
    sid = f"audit-{uuid.uuid4().hex[:6]}"
    session = DynamoDBSession(sid, client, table, user_id="ann")
    recorded: list[tuple[int, str, list[Any]]] = []

    async def go() -> None:
        steps = [
            lambda: session.add_items([{"role": "user", "content": "hi"}]),
            lambda: session.add_items([{"role": "assistant", "content": "hello ✓"},
                                       {"role": "user", "content": "more"}]),
            session.pop_item,
            lambda: session.add_items([{"role": "user", "content": "again"}]),
            session.clear_session,
            lambda: session.add_items([{"role": "user", "content": "fresh start"}]),
        ]
        for seq, step in enumerate(steps, start=1):
            await step()
            time.sleep(0.01)
            moment = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
            recorded.append((seq, moment, await session.get_items()))
            time.sleep(0.01)

    run(go())
    return sid, recorded


def test_replay_at_seq_gives_what_get_items_gave(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sid, recorded = _history(boto3_client, table)
    for seq, _, items in recorded:
        result = cli(capsys, endpoint, table, "replay", sid, "--at-seq", str(seq), "--format",
                     "json")
        assert result.code == 0
        doc = json.loads(result.out)
        assert doc["items"] == items
        assert doc["at_seq"] == seq
        assert [e["seq"] for e in doc["events"]] == list(range(1, seq + 1))
    table_out = cli(capsys, endpoint, table, "replay", sid, "--at-seq", "3").out
    assert "SEQ  TIME" in table_out and "item_popped" in table_out
    assert "items after seq 3 (2):" in table_out and 'user: "hi"' in table_out
    full = cli(capsys, endpoint, table, "replay", sid).out
    assert "session_cleared" in full and "cleared: every earlier item is gone" in full
    assert " ann " in full


def test_replay_as_of_gives_what_get_items_gave(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sid = f"asof-{uuid.uuid4().hex[:6]}"
    session = DynamoDBSession(sid, boto3_client, table)
    moments: list[tuple[str, list[Any]]] = []
    for text in ("one", "two"):
        run(session.add_items([{"role": "user", "content": text}]))
        time.sleep(0.05)
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
        moment = f"{stamp}.{int(now * 1000) % 1000:03d}Z"
        moments.append((moment, run(session.get_items())))
        time.sleep(0.05)
    before = "2000-01-01T00:00:00Z"
    for moment, items in [(before, []), *moments]:
        result = cli(capsys, endpoint, table, "replay", sid, "--as-of", moment, "--format", "json")
        assert json.loads(result.out)["items"] == items, moment
    bad = cli(capsys, endpoint, table, "replay", sid, "--as-of", "yesterday")
    assert bad.code == 2 and "ISO 8601" in bad.err


def test_replay_unknown_session_exits_1(
    endpoint: EmbeddedEndpoint, table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    result = cli(capsys, endpoint, table, "replay", "nobody")
    assert result.code == 1 and "has no events" in result.err


def test_jsonl_export_is_complete_and_reimportable(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, capsys: pytest.CaptureFixture[str],
    tmp_path: Any,
) -> None:
    sid, recorded = _history(boto3_client, table)
    big = [{"role": "user", "content": "x" * 300_000 + str(i)} for i in range(3)]
    run(DynamoDBSession(sid, boto3_client, table).add_items(big))  # compressed, binary payload
    result = cli(capsys, endpoint, table, "replay", sid, "--format", "jsonl")
    assert result.code == 0
    lines = [json.loads(line) for line in result.out.splitlines()]
    assert [line["seq"] for line in lines] == list(range(1, 8))
    for line in lines:
        body = {k: v for k, v in line.items() if k not in ("prev_hash", "hash", "ttl")}
        assert parse_event(body).seq == line["seq"]
    assert lines[0]["prev_hash"] == "0" * 64
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(lines))

    export = tmp_path / "export.jsonl"
    export.write_text(result.out, encoding="utf-8")
    other = f"restored-{uuid.uuid4().hex[:6]}"
    same = cli(capsys, endpoint, table, "import", str(export))
    assert same.code == 0  # the events are already there: recognised by token, not rewritten
    from eventstore import create_table_if_not_exists

    run(create_table_if_not_exists(boto3_client, other))
    imported = cli(capsys, endpoint, other, "import", str(export))
    assert imported.code == 0 and "imported 7 events" in imported.out
    assert run(DynamoDBSession(sid, boto3_client, other).get_items()) == [
        *recorded[-1][2], *big
    ]
    assert cli(capsys, endpoint, other, "verify", sid).code == 0
    again = cli(capsys, endpoint, other, "import", str(export))
    assert again.code == 0  # identical events are recognised, nothing duplicated
    assert len([i for i in scan(boto3_client, other) if i["sk"]["S"].count("#") == 1]) == 7


def test_import_rejects_a_tampered_export_before_writing(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, capsys: pytest.CaptureFixture[str],
    tmp_path: Any,
) -> None:
    sid, _ = _history(boto3_client, table)
    lines = cli(capsys, endpoint, table, "replay", sid, "--format", "jsonl").out.splitlines()
    doc = json.loads(lines[2])
    doc["item"] = {"role": "user", "content": "forged"}
    lines[2] = json.dumps(doc)
    export = tmp_path / "forged.jsonl"
    export.write_text("\n".join(lines), encoding="utf-8")
    from eventstore import create_table_if_not_exists

    other = f"restored-{uuid.uuid4().hex[:6]}"
    run(create_table_if_not_exists(boto3_client, other))
    result = cli(capsys, endpoint, other, "import", str(export))
    assert result.code == 2 and "seq 3" in result.err and "hash" in result.err
    assert scan(boto3_client, other) == []


def test_demo_with_a_real_model_needs_an_api_key(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert main(["demo", "--model", "gpt-4.1-mini"]) == 2
    assert capsys.readouterr().err.strip() == (
        "convlog demo: error: --model needs OPENAI_API_KEY in the environment"
    )
