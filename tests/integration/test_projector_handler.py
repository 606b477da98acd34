"""The projector handler on canned Lambda events (tests/events/*.json), against moto."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parser.models import DynamoDBStreamModel
from projection_support import load_event, view_items

from eventstore.snapshots import decode_snapshot
from eventstore.views import decode_meta, decode_tool_entry
from projections.session import iso_time
from stream_handlers import projector
from stream_handlers.projector import build_handler

CANNED = [
    "insert_event.json",
    "insert_events_tool_call.json",
    "view_write.json",
    "ttl_remove.json",
    "malformed_image.json",
    "unknown_version.json",
]


@pytest.mark.parametrize("name", CANNED)
def test_canned_events_have_the_lambda_shape(name: str) -> None:
    parsed = DynamoDBStreamModel.model_validate(load_event(name))
    assert parsed.Records


def test_insert_of_an_event_writes_snapshot_and_meta(
    boto3_client: Any, table: str, counter: Any
) -> None:
    handler = build_handler(boto3_client, table)
    assert handler(load_event("insert_event.json"), None) == {"batchItemFailures": []}
    assert counter.counts == {"BatchGetItem": 1, "PutItem": 2}
    views = {i["sk"]["S"]: i for i in view_items(boto3_client, table)}
    assert set(views) == {"META", "SNAPSHOT"}
    snapshot = decode_snapshot(views["SNAPSHOT"])
    assert snapshot.seq == 1
    assert snapshot.items() == [{"role": "user", "content": "Plan a weekend in Lisbon"}]
    meta = decode_meta(views["META"])
    assert (meta.user_id, meta.title, meta.item_count, meta.seq) == (
        "alice", "Plan a weekend in Lisbon", 1, 1)
    assert views["META"]["gsi1pk"] == {"S": "USER#alice"}
    assert views["META"]["gsi1sk"] == {"S": "2026-03-01T00:00:00.000Z#canned-trip"}


def test_tool_call_and_output_become_a_cache_entry(boto3_client: Any, table: str) -> None:
    # the canned events are from March 2026: a short TTL would (rightly) drop the entry
    handler = build_handler(boto3_client, table, tool_ttl_seconds=10**9)
    assert handler(load_event("insert_events_tool_call.json"), None) == {"batchItemFailures": []}
    tools = [i for i in view_items(boto3_client, table) if i["pk"]["S"].startswith("TOOL#")]
    assert len(tools) == 1
    entry = decode_tool_entry(tools[0])
    assert (entry.tool_name, entry.output, entry.call_id, entry.session_id, entry.hits) == (
        "get_weather", "Sunny, 24 C", "call_1", "canned-trip", 0)
    # dated by the record's ApproximateCreationDateTime, not by the event's ts
    record = load_event("insert_events_tool_call.json")["Records"][-1]
    created = record["dynamodb"]["ApproximateCreationDateTime"]
    assert entry.created == iso_time(created)
    assert entry.ttl == int(created) + 10**9
    meta = decode_meta(next(i for i in view_items(boto3_client, table) if i["sk"]["S"] == "META"))
    assert (meta.seq, meta.item_count, meta.last_active) == (3, 4, "2026-03-01T00:00:02.000Z")


@pytest.mark.parametrize("name", ["view_write.json", "ttl_remove.json"])
def test_view_writes_and_ttl_removes_are_ignored(
    name: str, boto3_client: Any, table: str, counter: Any
) -> None:
    handler = build_handler(boto3_client, table)
    assert handler(load_event(name), None) == {"batchItemFailures": []}
    assert counter.total == 0
    assert view_items(boto3_client, table) == []


@pytest.mark.parametrize("name", ["malformed_image.json", "unknown_version.json"])
def test_bad_image_is_a_reported_failure_with_a_log_line(
    name: str, boto3_client: Any, table: str, caplog: pytest.LogCaptureFixture
) -> None:
    event = load_event(name)
    record_id = event["Records"][0]["dynamodb"]["SequenceNumber"]
    handler = build_handler(boto3_client, table)
    assert handler(event, None) == {"batchItemFailures": [{"itemIdentifier": record_id}]}
    assert view_items(boto3_client, table) == []
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert "session canned-trip seq 1 cannot be decoded" in warnings[0].getMessage()
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1  # the table holds no copy to project instead (case 8)
    assert "session canned-trip blocked at seq 1" in errors[0].getMessage()
    assert (errors[0].session_id, errors[0].seq) == ("canned-trip", 1)


def test_bad_record_among_good_ones_fails_alone(boto3_client: Any, table: str) -> None:
    good = load_event("insert_events_tool_call.json")["Records"]
    bad = load_event("unknown_version.json")["Records"][0]
    bad = json.loads(json.dumps(bad).replace("canned-trip", "other-session"))
    ignored = load_event("ttl_remove.json")["Records"]
    event = {"Records": [good[0], bad, *ignored, good[1], good[2]]}
    response = build_handler(boto3_client, table)(event, None)
    bad_id = bad["dynamodb"]["SequenceNumber"]
    assert response == {"batchItemFailures": [{"itemIdentifier": bad_id}]}
    snapshot = decode_snapshot(
        next(i for i in view_items(boto3_client, table) if i["sk"]["S"] == "SNAPSHOT"))
    assert snapshot.seq == 3
    assert all(i["pk"]["S"] != "SESSION#other-session" for i in view_items(boto3_client, table))


def test_expired_tool_results_are_not_cached(boto3_client: Any, table: str) -> None:
    handler = build_handler(boto3_client, table, tool_ttl_seconds=600)
    assert handler(load_event("insert_events_tool_call.json"), None) == {"batchItemFailures": []}
    assert [i["sk"]["S"] for i in view_items(boto3_client, table)] == ["META", "SNAPSHOT"]


def test_redelivered_event_changes_nothing(boto3_client: Any, table: str, counter: Any) -> None:
    handler = build_handler(boto3_client, table)
    event = load_event("insert_events_tool_call.json")
    handler(event, None)
    before = view_items(boto3_client, table)
    counter.reset()
    assert handler(event, None) == {"batchItemFailures": []}
    assert counter.counts == {"BatchGetItem": 1}  # reads the views, sees seq 3, writes nothing
    assert view_items(boto3_client, table) == before


def test_lambda_entry_point_reads_env_and_emits_metrics(
    endpoint: Any, table: str, boto3_client: Any, monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TABLE_NAME", table)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint.url)
    monkeypatch.setattr(projector, "_client", None)
    assert projector.handler(load_event("insert_event.json"), None) == {"batchItemFailures": []}
    assert {i["sk"]["S"] for i in view_items(boto3_client, table)} == {"META", "SNAPSHOT"}
    emf = [json.loads(line) for line in capfd.readouterr().out.splitlines()
           if line.startswith("{") and "_aws" in line]
    assert emf and emf[-1]["EventsProjected"] == [1.0]
    assert emf[-1]["ProjectionLag"][0] > 0
    monkeypatch.setattr(projector, "_client", None)
