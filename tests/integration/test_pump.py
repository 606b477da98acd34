"""The local stream pump: Lambda-shaped batches, filter, batch size, retries, background loop."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parser.models import DynamoDBStreamModel
from projection_support import History, make_pump, put_events, ts_of

from convlog.pump import StreamPump
from eventstore import DynamoDBSession
from eventstore.errors import StreamPumpError
from eventstore.table import STREAM_BATCH_SIZE, STREAM_FILTER_PATTERN
from stream_handlers.projector import build_handler


class Recorder:
    """A handler that records batches and fails chosen records a number of times."""

    def __init__(self, fail: dict[int, int] | None = None, crash: int = 0) -> None:
        self.batches: list[list[dict[str, Any]]] = []
        self.fail = dict(fail or {})  # event seq -> failures left
        self.crash = crash

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        records = event["Records"]
        self.batches.append(records)
        if self.crash:
            self.crash -= 1
            raise RuntimeError("handler bug")
        for record in records:
            seq = int(record["dynamodb"]["Keys"]["sk"]["S"][6:18])
            if self.fail.get(seq, 0) > 0:
                self.fail[seq] -= 1
                return {"batchItemFailures": [
                    {"itemIdentifier": record["dynamodb"]["SequenceNumber"]}]}
        return {"batchItemFailures": []}

    def seqs(self, batch: int) -> list[int]:
        return [int(r["dynamodb"]["Keys"]["sk"]["S"][6:18]) for r in self.batches[batch]]


def write(boto3_client: Any, table: str, count: int, session: str = "s") -> list[Any]:
    h = History(session)
    events = [h.build(("add", [{"role": "user", "content": f"m{i}"}]), ts_of(i))
              for i in range(count)]
    put_events(boto3_client, table, events)
    return events


def test_records_have_the_lambda_shape(endpoint: Any, boto3_client: Any, table: str) -> None:
    h = History("big")
    big = h.build(("add", [{"role": "user", "content": "x" * 5000}]), ts_of(0))  # zlib: binary
    put_events(boto3_client, table, [big])
    recorder = Recorder()
    assert make_pump(endpoint, table, recorder).drain() == 1
    event = {"Records": recorder.batches[0]}
    parsed = DynamoDBStreamModel.model_validate(event)
    record = event["Records"][0]
    assert record["eventSource"] == "aws:dynamodb" and record["eventName"] == "INSERT"
    arn = f"arn:aws:dynamodb:us-east-1:123456789012:table/{table}/stream/"
    assert record["eventSourceARN"].startswith(arn)
    assert isinstance(record["dynamodb"]["ApproximateCreationDateTime"], float)
    assert parsed.Records[0].dynamodb.SequenceNumber == record["dynamodb"]["SequenceNumber"]
    stored = boto3_client.get_item(TableName=table, Key=record["dynamodb"]["Keys"])["Item"]
    payload = record["dynamodb"]["NewImage"]["payload"]["B"]
    assert base64.b64decode(payload) == stored["payload"]["B"]


def test_filter_drops_view_writes_and_batches_hold_at_most_the_batch_size(
    endpoint: Any, boto3_client: Any, table: str
) -> None:
    assert STREAM_BATCH_SIZE == 100
    write(boto3_client, table, 230)
    boto3_client.put_item(TableName=table, Item={"pk": {"S": "TOOL#x"}, "sk": {"S": "ARGS#1"}})
    boto3_client.delete_item(TableName=table, Key={"pk": {"S": "SESSION#s"},
                                                   "sk": {"S": "EVENT#000000000230"}})
    recorder = Recorder()
    pump = make_pump(endpoint, table, recorder)
    assert pump.filter_pattern == STREAM_FILTER_PATTERN
    assert pump.drain() == 230
    assert [len(b) for b in recorder.batches] == [100, 100, 30]
    assert pump.stats.filtered == 2  # the TOOL# insert and the REMOVE
    assert [s for b in range(3) for s in recorder.seqs(b)] == list(range(1, 231))
    assert pump.drain() == 0 and len(recorder.batches) == 3


def test_failure_retries_from_the_first_failed_record(
    endpoint: Any, boto3_client: Any, table: str
) -> None:
    write(boto3_client, table, 10)
    recorder = Recorder(fail={4: 2})
    pump = make_pump(endpoint, table, recorder, batch_size=5)
    assert pump.drain() == 10
    assert [recorder.seqs(i) for i in range(len(recorder.batches))] == [
        [1, 2, 3, 4, 5], [4, 5, 6, 7, 8], [4, 5, 6, 7, 8], [9, 10]]
    assert (pump.stats.retries, pump.stats.skipped) == (2, 0)


def test_exhausted_retries_skip_or_stop(endpoint: Any, boto3_client: Any, table: str) -> None:
    write(boto3_client, table, 6)
    stopper = make_pump(endpoint, table, Recorder(fail={3: 99}), max_retries=1,
                        on_exhausted="stop")
    with pytest.raises(StreamPumpError, match="EVENT#000000000003"):
        stopper.drain()
    skipper_handler = Recorder(fail={3: 99})
    skipper = make_pump(endpoint, table, skipper_handler, max_retries=1)
    assert skipper.drain() == 5
    assert skipper.stats.skipped == 1
    assert [skipper_handler.seqs(i) for i in range(3)] == [
        [1, 2, 3, 4, 5, 6], [3, 4, 5, 6], [4, 5, 6]]


def test_a_crashing_handler_fails_the_whole_batch(
    endpoint: Any, boto3_client: Any, table: str
) -> None:
    write(boto3_client, table, 4)
    recorder = Recorder(crash=1)
    pump = make_pump(endpoint, table, recorder)
    assert pump.drain() == 4
    assert [recorder.seqs(i) for i in range(2)] == [[1, 2, 3, 4], [1, 2, 3, 4]]


def test_latest_starts_after_what_is_there(endpoint: Any, boto3_client: Any, table: str) -> None:
    write(boto3_client, table, 3, session="old")
    recorder = Recorder()
    pump = make_pump(endpoint, table, recorder, starting_position="LATEST")
    assert pump.drain() == 0
    write(boto3_client, table, 2, session="new")
    assert pump.drain() == 2
    assert {r["dynamodb"]["Keys"]["pk"]["S"] for r in recorder.batches[0]} == {"SESSION#new"}


def test_table_without_stream_is_an_error(endpoint: Any, boto3_client: Any) -> None:
    name = "no-stream-table"
    boto3_client.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
    )
    with pytest.raises(StreamPumpError, match="no stream"):
        make_pump(endpoint, name, Recorder()).drain()
    boto3_client.delete_table(TableName=name)


async def test_background_pump_keeps_the_views_fresh(
    endpoint: Any, boto3_client: Any, table: str
) -> None:
    session = DynamoDBSession("live", boto3_client, table, user_id="u")
    pump = StreamPump(build_handler(endpoint.client("dynamodb"), table), table,
                      client_kwargs=endpoint.client_kwargs(), poll_interval_seconds=0.05,
                      batching_window_seconds=0.1)
    with pump:
        for i in range(5):
            await session.add_items([{"role": "user", "content": f"hello {i}"}])
        deadline = time.monotonic() + 30
        while pump.stats.delivered < 5 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    assert pump.stats.delivered == 5
    assert pump.error is None
    item = boto3_client.get_item(TableName=table, Key={"pk": {"S": "SESSION#live"},
                                                        "sk": {"S": "SNAPSHOT"}})["Item"]
    assert item["seq"] == {"N": "5"}
    expected = [{"role": "user", "content": f"hello {i}"} for i in range(5)]
    assert await session.get_items() == expected


def test_an_expired_shard_iterator_is_renewed(endpoint: Any, boto3_client: Any, table: str) -> None:
    from botocore.exceptions import ClientError

    write(boto3_client, table, 3)
    recorder = Recorder()
    streams = endpoint.client("dynamodbstreams")
    pump = StreamPump(recorder, table, dynamodb=endpoint.client("dynamodb"), streams=streams)
    assert pump.drain() == 3
    write(boto3_client, table, 2, session="t")
    expired = {"left": 1}

    def expire(**_: Any) -> None:  # fault injection: AWS expires iterators after 15 minutes
        if expired["left"]:
            expired["left"] -= 1
            raise ClientError({"Error": {"Code": "ExpiredIteratorException",
                                         "Message": "Iterator expired"}}, "GetRecords")

    streams.meta.events.register("before-call.dynamodbstreams.GetRecords", expire)
    assert pump.drain() == 2
    assert expired["left"] == 0
    assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in recorder.batches[1]] == ["SESSION#t"] * 2
