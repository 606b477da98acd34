"""Issue 11, cases 3 and 4: invalidations stay, and one tenant cannot poison another's cache.

Everything runs on the embedded endpoint; the local stream pump runs the real projector
handler, and a fresh pump redelivers the whole stream from ``TRIM_HORIZON``.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from cli_helpers import tool_turn
from projection_support import History, make_pump, put_events

from convlog.local import EmbeddedEndpoint
from eventstore import DynamoDBSession, ToolCache
from eventstore.errors import InvalidInputError


def _sid(prefix: str = "") -> str:
    return f"{prefix}conv-{uuid.uuid4().hex[:8]}"


async def _say(client: Any, table: str, session_id: str, items: list[dict[str, Any]]) -> None:
    await DynamoDBSession(session_id, client, table).add_items(items)


def _pair(tool: str, arguments: str, output: str, call_id: str) -> list[dict[str, Any]]:
    return [
        {"type": "function_call", "name": tool, "call_id": call_id, "arguments": arguments,
         "id": call_id},
        {"type": "function_call_output", "call_id": call_id, "output": output},
    ]


async def test_invalidating_one_entry_is_not_undone_by_the_stream(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str
) -> None:
    cache = ToolCache(boto3_client, table)
    await cache.put("get_price", {"sku": "a1"}, "9.99")
    await _say(boto3_client, table, _sid(), _pair("get_price", '{"sku":"a1"}', "9.99", "c1"))
    time.sleep(1.1)  # the stream's clock has a resolution of one second
    assert await cache.invalidate("get_price", {"sku": "a1"}) == 1
    pump = make_pump(endpoint, table)
    pump.drain()  # the projector lagged: it sees the result only now
    assert await cache.get("get_price", {"sku": "a1"}) is None
    make_pump(endpoint, table).drain()  # the whole stream again, from TRIM_HORIZON
    assert await cache.get("get_price", {"sku": "a1"}) is None


async def test_invalidating_a_tool_beats_a_lagging_projector(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str
) -> None:
    cache = ToolCache(boto3_client, table)
    # Results produced before the invalidation, not yet projected (the projector lags).
    await _say(boto3_client, table, _sid(), _pair("get_price", '{"sku":"a1"}', "9.99", "c1"))
    await _say(boto3_client, table, _sid(), _pair("get_price", '{"sku":"b2"}', "5.00", "c2"))
    time.sleep(1.1)  # the stream's clock has a resolution of one second
    await cache.invalidate("get_price")
    make_pump(endpoint, table).drain()
    assert await cache.get("get_price", {"sku": "a1"}) is None
    assert await cache.get("get_price", {"sku": "b2"}) is None
    # A result produced after the invalidation is cached again.
    time.sleep(1.1)
    await _say(boto3_client, table, _sid(), _pair("get_price", '{"sku":"a1"}', "7.50", "c3"))
    make_pump(endpoint, table).drain()
    hit = await cache.get("get_price", {"sku": "a1"})
    assert hit is not None and hit.output == "7.50"


async def test_a_tenants_made_up_result_stays_in_its_own_scope(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str
) -> None:
    forged = _pair("get_weather", '{"city":"Paris"}', "acme says: it rains frogs", "f1")
    await _say(boto3_client, table, _sid("acme/"), forged)
    make_pump(endpoint, table).drain()
    assert await ToolCache(boto3_client, table).get("get_weather", {"city": "Paris"}) is None
    assert await ToolCache(boto3_client, table, scope="globex").get(
        "get_weather", {"city": "Paris"}) is None
    own = await ToolCache(boto3_client, table, scope="acme").get("get_weather", {"city": "Paris"})
    assert own is not None and own.output == "acme says: it rains frogs"
    assert own.session_id is not None and own.session_id.startswith("acme/")


async def test_event_ts_in_the_future_does_not_win_or_live_longer(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str
) -> None:
    history = History(_sid("acme/"))
    far = history.build(("add", _pair("get_weather", '{"city":"Oslo"}', "forged", "x1")),
                        "2099-01-01T00:00:00.000Z")
    put_events(boto3_client, table, [far])
    make_pump(endpoint, table).drain()
    cache = ToolCache(boto3_client, table, scope="acme")
    first = await cache.get("get_weather", {"city": "Oslo"})
    assert first is not None and first.ttl is not None
    assert first.ttl < time.time() + 2 * 3600  # from the stream's clock, not from 2099
    assert not first.created.startswith("2099")
    time.sleep(1.1)
    await _say(boto3_client, table, _sid("acme/"),
               _pair("get_weather", '{"city":"Oslo"}', "genuine", "x2"))
    make_pump(endpoint, table).drain()
    second = await cache.get("get_weather", {"city": "Oslo"})
    assert second is not None and second.output == "genuine"


async def test_two_apps_with_their_own_scopes_do_not_share_entries(
    boto3_client: Any, table: str
) -> None:
    shop = ToolCache(boto3_client, table, scope="shop")
    bank = ToolCache(boto3_client, table, scope="bank")
    await shop.put("lookup", {"id": 1}, "a shoe")
    assert await bank.get("lookup", {"id": 1}) is None
    assert await ToolCache(boto3_client, table).get("lookup", {"id": 1}) is None
    hit = await shop.get("lookup", {"id": 1})
    assert hit is not None and hit.output == "a shoe"


@pytest.mark.parametrize("scope", ["", "a/b", 7])
def test_bad_scopes_are_rejected(boto3_client: Any, scope: Any) -> None:
    with pytest.raises(InvalidInputError):
        ToolCache(boto3_client, "t", scope=scope)


async def test_tool_names_cannot_reach_into_a_scope(boto3_client: Any, table: str) -> None:
    with pytest.raises(InvalidInputError):
        await ToolCache(boto3_client, table).put("acme/get_weather", {}, "x")


async def test_a_global_session_naming_a_scoped_tool_fills_no_scope(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str
) -> None:
    await _say(boto3_client, table, _sid(), _pair("acme/get_weather", "{}", "x", "g1"))
    await _say(boto3_client, table, _sid(), tool_turn(1, "Rome"))
    make_pump(endpoint, table).drain()
    assert await ToolCache(boto3_client, table, scope="acme").get("get_weather", {}) is None
    assert await ToolCache(boto3_client, table).get("get_weather", {"city": "Rome"}) is not None
