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

    # The projector replaces the expired views although their seq (2) is ahead of the new 1.
    assert handler({"Records": _records(boto3_client, table, "expiring")}, None) == {
        "batchItemFailures": []}
    snapshot = boto3_client.get_item(TableName=table, Key={"pk": pk, "sk": {"S": "SNAPSHOT"}})
    assert snapshot["Item"]["seq"] == {"N": "1"}
    assert int(snapshot["Item"]["ttl"]["N"]) > time.time()


async def test_projector_replaces_views_whose_events_all_expired(
    boto3_client: Any, table: str
) -> None:
    """Lag past the TTL: the events between the stale views and the new ones are gone."""
    session = DynamoDBSession("lagging", boto3_client, table, ttl_seconds=3600)
    for turn in range(3):
        await session.add_items([{"role": "user", "content": f"old {turn}"}])
    handler = build_handler(boto3_client, table)
    first = [r for r in _records(boto3_client, table, "lagging")
             if r["dynamodb"]["Keys"]["sk"]["S"] == "EVENT#000000000001"]
    assert handler({"Records": first}, None) == {"batchItemFailures": []}

    # The projector stops; the views and events 1..3 expire; DynamoDB has deleted events
    # 1 and 2 so far, event 3 is still stored.
    pk = {"S": session_pk("lagging")}
    past = {":t": {"N": str(int(time.time()) - 10)}}
    for sk in ("SNAPSHOT", "META", "EVENT#000000000003"):
        boto3_client.update_item(TableName=table, Key={"pk": pk, "sk": {"S": sk}},
                                 UpdateExpression="SET #t = :t",
                                 ExpressionAttributeNames={"#t": "ttl"},
                                 ExpressionAttributeValues=past)
    for seq in (1, 2):
        boto3_client.delete_item(TableName=table,
                                 Key={"pk": pk, "sk": {"S": f"EVENT#{seq:012d}"}})
    await DynamoDBSession("lagging", boto3_client, table, ttl_seconds=3600).add_items(
        [{"role": "user", "content": "after the gap"}])
    newest = await DynamoDBSession("lagging", boto3_client, table).get_items()
    assert newest == [{"role": "user", "content": "after the gap"}]

    new_record = [r for r in _records(boto3_client, table, "lagging")
                  if r["dynamodb"]["Keys"]["sk"]["S"] == "EVENT#000000000004"]
    assert handler({"Records": new_record}, None) == {"batchItemFailures": []}
    views = {i["sk"]["S"]: i for i in boto3_client.query(
        TableName=table, KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": pk})["Items"] if not i["sk"]["S"].startswith("EVENT#")}
    assert views["SNAPSHOT"]["seq"] == {"N": "4"}  # not blocked by the deleted 1..2
    assert views["META"]["item_count"] == {"N": "1"}
    assert int(views["SNAPSHOT"]["ttl"]["N"]) > time.time()
    assert await DynamoDBSession("lagging", boto3_client, table).get_items() == newest
