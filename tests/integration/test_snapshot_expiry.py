"""An expired snapshot never hides the events of a session that started over."""

from __future__ import annotations

import time
from typing import Any

from eventstore import DynamoDBSession
from eventstore.keys import session_pk
from stream_handlers.projector import build_handler


def _records(client: Any, table: str, session_id: str) -> list[dict[str, Any]]:
    items = client.query(
        TableName=table,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :ev)",
        ExpressionAttributeValues={":pk": {"S": session_pk(session_id)}, ":ev": {"S": "EVENT#"}},
    )["Items"]
    return [
        {"eventID": str(i), "eventName": "INSERT", "eventSource": "aws:dynamodb",
         "awsRegion": "us-east-1", "eventVersion": "1.1",
         "eventSourceARN": f"arn:aws:dynamodb:us-east-1:123456789012:table/{table}/stream/x",
         "dynamodb": {"Keys": {"pk": item["pk"], "sk": item["sk"]}, "NewImage": item,
                      "SequenceNumber": str(100 + i), "SizeBytes": 100,
                      "StreamViewType": "NEW_AND_OLD_IMAGES",
                      "ApproximateCreationDateTime": time.time()}}
        for i, item in enumerate(items)
    ]


async def test_session_restarting_after_every_event_expired(boto3_client: Any, table: str) -> None:
    old = DynamoDBSession("expiring", boto3_client, table, ttl_seconds=3600)
    await old.add_items([{"role": "user", "content": f"old {i}"} for i in range(3)])
    await old.add_items([{"role": "assistant", "content": "old answer"}])
    handler = build_handler(boto3_client, table)
    assert handler({"Records": _records(boto3_client, table, "expiring")}, None) == {
        "batchItemFailures": []}
    pk = {"S": session_pk("expiring")}
    snapshot = boto3_client.get_item(TableName=table, Key={"pk": pk, "sk": {"S": "SNAPSHOT"}})
    assert snapshot["Item"]["seq"] == {"N": "2"} and "ttl" in snapshot["Item"]

    # Time passes: every event and the snapshot expire; DynamoDB's lazy TTL deletes the
    # events first, the snapshot is still there.
    past = {":t": {"N": str(int(time.time()) - 10)}}
    boto3_client.update_item(TableName=table, Key={"pk": pk, "sk": {"S": "SNAPSHOT"}},
                             UpdateExpression="SET #t = :t",
                             ExpressionAttributeNames={"#t": "ttl"}, ExpressionAttributeValues=past)
    for seq in (1, 2):
        boto3_client.delete_item(TableName=table,
                                 Key={"pk": pk, "sk": {"S": f"EVENT#{seq:012d}"}})

    fresh = DynamoDBSession("expiring", boto3_client, table, ttl_seconds=3600)
    await fresh.add_items([{"role": "user", "content": "new start"}])
    assert await fresh.get_items() == [{"role": "user", "content": "new start"}]
    assert await DynamoDBSession("expiring", boto3_client, table).get_items(limit=5) == [
        {"role": "user", "content": "new start"}]
