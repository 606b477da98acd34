"""Case 8 (issue 10): the table's copy of an event is the truth, not the stream record.

A stream record whose image cannot be decoded is projected from the event stored in the
table: if that copy is good, the views move past it and the record is not reported
failed; if the table's copy is bad too, the session's views stop before it and that
record (and every later one of the session) is reported failed.
"""

from __future__ import annotations

import uuid
from typing import Any

from cli_helpers import run
from projection_support import stream_records, view_items

from convlog.local import EmbeddedEndpoint
from eventstore import DynamoDBSession
from eventstore.keys import session_pk
from eventstore.snapshots import decode_snapshot
from stream_handlers.projector import build_handler


def msg(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def snapshot_of(client: Any, table: str, sid: str) -> Any:
    item = next(i for i in view_items(client, table)
                if i["pk"]["S"] == session_pk(sid) and i["sk"]["S"] == "SNAPSHOT")
    return decode_snapshot(item)


def records_of(endpoint: EmbeddedEndpoint, client: Any, table: str) -> tuple[str, list[Any]]:
    sid = f"st-{uuid.uuid4().hex[:8]}"
    writer = DynamoDBSession(sid, client, table)
    for n in (1, 2, 3):
        run(writer.add_items([msg(f"m{n}")]))
    records = [r for r in stream_records(endpoint, table)
               if r["dynamodb"]["Keys"]["pk"]["S"] == session_pk(sid)]
    assert len(records) == 3
    records[1]["dynamodb"]["NewImage"]["payload"] = {"S": "{not json"}  # seq 2's image
    return sid, records


def test_a_malformed_record_whose_table_copy_is_good_is_projected_from_the_table(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str
) -> None:
    sid, records = records_of(endpoint, boto3_client, table)
    response = build_handler(boto3_client, table)({"Records": records}, None)
    assert response == {"batchItemFailures": []}
    snapshot = snapshot_of(boto3_client, table, sid)
    assert (snapshot.seq, snapshot.items()) == (3, [msg("m1"), msg("m2"), msg("m3")])


def test_a_malformed_record_whose_table_copy_is_bad_too_stops_the_views_before_it(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str
) -> None:
    sid, records = records_of(endpoint, boto3_client, table)
    boto3_client.update_item(
        TableName=table, Key={"pk": {"S": session_pk(sid)}, "sk": {"S": "EVENT#000000000002"}},
        UpdateExpression="SET payload = :p", ExpressionAttributeValues={":p": {"S": "{bad"}})
    response = build_handler(boto3_client, table)({"Records": records}, None)
    failed = [f["itemIdentifier"] for f in response["batchItemFailures"]]
    assert failed == [records[1]["dynamodb"]["SequenceNumber"],
                      records[2]["dynamodb"]["SequenceNumber"]]
    snapshot = snapshot_of(boto3_client, table, sid)
    assert (snapshot.seq, snapshot.items()) == (1, [msg("m1")])
