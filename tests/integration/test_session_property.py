"""Property test: ``DynamoDBSession`` behaves like a plain Python list.

Random sequences of ``add_items`` / ``pop_item`` / ``clear_session`` and random ``limit``
values run against moto's server over HTTP; after every step ``get_items`` must equal the
model, whichever of two session objects (boto3 and aiobotocore) did the step. One table is
reused; each example gets a fresh session id.
"""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventstore import DynamoDBSession

texts = st.text(max_size=12)
items = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]), "content": texts})
limits = st.one_of(st.none(), st.integers(min_value=0, max_value=12))
who = st.integers(min_value=0, max_value=1)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.lists(items, max_size=5), who),
        st.tuples(st.just("pop"), st.none(), who),
        st.tuples(st.just("clear"), st.none(), who),
        st.tuples(st.just("get"), limits, who),
    ),
    min_size=1,
    max_size=16,
)


def expected(model: list[Any], limit: int | None) -> list[Any]:
    if limit is None:
        return list(model)
    return model[-limit:] if limit > 0 else []


async def run_against_model(
    clients: tuple[Any, Any], table: str, ops: list[tuple[str, Any, int]]
) -> None:
    """Two session objects (one per client kind) on one id: each sees the other's writes."""
    session_id = f"prop-{uuid.uuid4().hex}"
    sessions = [DynamoDBSession(session_id, client, table) for client in clients]
    model: list[Any] = []
    for op, arg, index in ops:
        writer = sessions[index]
        if op == "add":
            await writer.add_items(arg)
            model.extend(arg)
        elif op == "pop":
            assert await writer.pop_item() == (model.pop() if model else None)
        elif op == "clear":
            await writer.clear_session()
            model.clear()
        else:
            assert await writer.get_items(limit=arg) == expected(model, arg)
    reader = DynamoDBSession(session_id, clients[0], table)  # a fresh object, nothing cached
    assert await reader.get_items() == model
    for limit in (1, 2, 5):
        assert await reader.get_items(limit=limit) == expected(model, limit)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=operations)
async def test_session_equals_list_model(
    boto3_client: Any, aio_client: Any, table: str, ops: list[tuple[str, Any, int]]
) -> None:
    await run_against_model((boto3_client, aio_client), table, ops)
