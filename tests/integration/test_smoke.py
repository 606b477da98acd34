from typing import Any

from eventstore import DynamoDBSession


async def test_round_trip_and_one_request_append(
    boto3_client: Any, table: str, counter: Any
) -> None:
    session = DynamoDBSession("s", boto3_client, table)
    await session.add_items([{"role": "user", "content": "hi"}])
    counter.reset()
    await session.add_items([{"role": "assistant", "content": "hello"}])
    assert counter.total == 1
    assert await session.get_items() == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
    ]
