"""One script of operations against ``AdvancedSQLiteSession`` and ``DynamoDBSession``.

Adds over several turns (with a tool call), usage stored per turn, a branch from turn 2,
switches, adds on both branches, a branch deleted, and every query: the two stores must
give the same results (times aside: each store stamps its own).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from agents.extensions.memory.advanced_sqlite_session import AdvancedSQLiteSession
from agents.usage import InputTokensDetails, OutputTokensDetails, Usage

from eventstore import DynamoDBSession


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


def weather_call(call_id: str, city: str) -> list[dict[str, Any]]:
    return [
        {"type": "function_call", "call_id": call_id, "name": "get_weather",
         "arguments": f'{{"city": "{city}"}}'},
        {"type": "function_call_output", "call_id": call_id, "output": "sunny"},
    ]


def run_result(requests: int, tokens_in: int, tokens_out: int) -> Any:
    usage = Usage(
        requests=requests, input_tokens=tokens_in, output_tokens=tokens_out,
        total_tokens=tokens_in + tokens_out,
        input_tokens_details=InputTokensDetails(cached_tokens=1, cache_write_tokens=0),
        output_tokens_details=OutputTokensDetails(reasoning_tokens=2),
    )
    return SimpleNamespace(context_wrapper=SimpleNamespace(usage=usage))


def untimed(value: Any) -> Any:
    """Drop the store-specific times (``timestamp``, ``created_at``)."""
    if isinstance(value, list):
        return [untimed(v) for v in value]
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if k not in ("timestamp", "created_at")}
    return value


async def script(session: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    await session.add_items([user("Hello, plan a trip to Paris"), assistant("Sure!")])
    await session.store_run_usage(run_result(1, 10, 5))
    await session.add_items([user("What is the weather in Paris?"),
                             *weather_call("c1", "Paris"), assistant("Sunny")])
    await session.store_run_usage(run_result(2, 20, 8))
    await session.add_items([user("Book a hotel near the Louvre"), assistant("Booked")])
    await session.store_run_usage(run_result(1, 30, 6))
    out["turns"] = untimed(await session.get_conversation_turns())
    out["branch"] = await session.create_branch_from_turn(2, "alt")
    out["alt_start"] = await session.get_items()
    await session.add_items([user("Rather the weather in Lisbon?"),
                             *weather_call("c2", "Lisbon"), assistant("Clear")])
    await session.store_run_usage(run_result(3, 12, 4))
    await session.switch_to_branch("main")
    await session.add_items([user("Thanks!"), assistant("Bye")])
    await session.store_run_usage(run_result(1, 5, 1))
    out["main_items"] = await session.get_items()
    out["alt_items"] = await session.get_items(branch_id="alt")
    out["main_limit"] = await session.get_items(limit=3)
    out["doomed"] = await session.create_branch_from_content("hotel", "doomed")
    out["doomed_items"] = await session.get_items()
    with pytest.raises(ValueError):
        await session.delete_branch("doomed")
    with pytest.raises(ValueError):
        await session.create_branch_from_turn(9, "nope")
    with pytest.raises(ValueError):
        await session.create_branch_from_turn(1, "alt")
    await session.switch_to_branch("alt")
    await session.delete_branch("doomed")
    with pytest.raises(ValueError):
        await session.switch_to_branch("doomed")
    out["popped"] = await session.pop_item()
    # both order by creation time; SQLite's is in whole seconds, so ties are arbitrary
    out["branches"] = sorted(untimed(await session.list_branches()), key=lambda b: b["branch_id"])
    for branch in (None, "main", "alt"):
        key = branch or "current"
        out[f"usage_{key}"] = await session.get_session_usage(branch)
        out[f"turn_usage_{key}"] = await session.get_turn_usage(branch_id=branch)
        out[f"turns_{key}"] = untimed(await session.get_conversation_turns(branch))
        out[f"find_{key}"] = untimed(await session.find_turns_by_content("WEATHER", branch))
        out[f"by_turns_{key}"] = await session.get_conversation_by_turns(branch)
        out[f"tools_{key}"] = [tuple(t) for t in await session.get_tool_usage(branch)]
    out["turn_2_usage"] = await session.get_turn_usage(2, "main")
    out["turn_9_usage"] = await session.get_turn_usage(9)
    return out


async def test_same_results_as_advanced_sqlite(boto3_client: Any, table: str) -> None:
    reference = AdvancedSQLiteSession(session_id="parity", create_tables=True)
    expected = await script(reference)
    reference.close()
    actual = await script(DynamoDBSession("parity", boto3_client, table))
    assert set(actual) == set(expected)
    for key in expected:
        assert actual[key] == expected[key], key
    # the script exercised what it claims to
    assert [b["branch_id"] for b in expected["branches"]] == ["alt", "main"]
    assert expected["usage_current"]["total_turns"] == 5
    assert expected["tools_main"] == [("get_weather", 1, 2)]


async def clear_script(session: Any) -> dict[str, Any]:
    """``clear_session`` on a session with branches, called from a branch."""
    out: dict[str, Any] = {}
    await session.add_items([user("Plan a trip"), assistant("Where to?")])
    await session.store_run_usage(run_result(1, 10, 5))
    await session.add_items([user("Paris"), assistant("Nice")])
    await session.create_branch_from_turn(2, "alt")
    await session.add_items([user("Rome"), assistant("Also nice")])
    await session.store_run_usage(run_result(2, 20, 8))
    out["before"] = sorted(untimed(await session.list_branches()), key=lambda b: b["branch_id"])
    await session.clear_session()  # on branch "alt": every branch goes, back on main
    out["current"] = session._current_branch_id
    out["items"] = await session.get_items()
    out["main_items"] = await session.get_items(branch_id="main")
    out["alt_items"] = await session.get_items(branch_id="alt")
    out["branches"] = untimed(await session.list_branches())
    out["usage"] = await session.get_session_usage()
    out["alt_usage"] = await session.get_session_usage("alt")
    out["turns"] = await session.get_conversation_turns()
    with pytest.raises(ValueError):
        await session.switch_to_branch("alt")
    await session.add_items([user("Start over"), assistant("Sure")])
    with pytest.raises(ValueError):  # a cleared branch's id stays reserved
        await session.create_branch_from_turn(1, "alt")
    out["after"] = await session.get_items()
    out["after_branches"] = untimed(await session.list_branches())
    out["after_tools"] = await session.get_tool_usage()
    return out


async def test_clear_session_clears_every_branch_as_advanced_sqlite(
    boto3_client: Any, table: str
) -> None:
    reference = AdvancedSQLiteSession(session_id="parity-clear", create_tables=True)
    expected = await clear_script(reference)
    reference.close()
    actual = await clear_script(DynamoDBSession("parity-clear", boto3_client, table))
    assert actual == expected
    assert [b["branch_id"] for b in expected["before"]] == ["alt", "main"]
    assert expected["current"] == "main" and expected["alt_items"] == []
    assert expected["branches"] == [] and expected["usage"] is None
