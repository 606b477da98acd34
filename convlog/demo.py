"""The scripted conversation behind ``convlog demo``.

Three sessions, two users, a weather tool that the agent calls twice with the same
arguments, usage stored after every run, and a branch of the main session from turn 2.
Every id is tenant-scoped (``travel/...``, the layout the README recommends): the
projector writes the tool results of ``travel/`` sessions into the ``travel`` cache scope
only, and the demo's ``ToolCache`` reads that scope, so another app on the same table
never serves it a result (nor it to them).
By default the model is the SDK's ``agents.testing.ScriptedModel`` (no API key, no
network); ``model_name`` switches to a real OpenAI model.

Example:
    ```python
    result = await run_conversation(boto3_client, "agent_sessions", tenant="travel")
    print(result.tool_executions, result.checkpoint_seq)
    ```
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agents.tool_context import ToolContext

from eventstore.log import EventLog
from eventstore.session import DynamoDBSession

ToolWrapper = Callable[[Any], Any]
TurnCallback = Callable[[str, str, str], None]

TENANT = "travel"
"""The demo's tenant: the prefix of every session and user id, and its cache scope."""
USER = "alice"
MAIN_SESSION = "alice-trip-paris"
OLDER_SESSION = "alice-museums"
OTHER_USER = "bob"
OTHER_SESSION = "bob-chat"
TOOL_NAME = "get_weather"
FORECASTS = {"paris": "18°C, sunny, light wind", "lisbon": "24°C, clear sky"}
INSTRUCTIONS = "You are a concise travel assistant. Use get_weather for the weather."

# (session, user, [(user input, scripted model outputs per model call)])
_Turn = tuple[str, list[list[dict[str, Any]]]]
SCRIPT: list[tuple[str, str, list[_Turn]]] = [
    (OLDER_SESSION, USER, [
        ("Which museum should I see in Lisbon?", [
            [{"say": "The Gulbenkian: a superb collection in a quiet garden."}],
        ]),
    ]),
    (OTHER_SESSION, OTHER_USER, [
        ("Hello!", [[{"say": "Hi Bob, how can I help?"}]]),
    ]),
    (MAIN_SESSION, USER, [
        ("What's the weather in Paris today?", [
            [{"call": {"city": "Paris"}, "id": "call_weather_1"}],
            [{"say": "It is 18°C and sunny in Paris, with a light wind."}],
        ]),
        ("Do I need an umbrella there this afternoon?", [
            [{"call": {"city": "Paris"}, "id": "call_weather_2"}],
            [{"say": "No umbrella needed: still sunny and dry this afternoon."}],
        ]),
        ("Great, thanks!", [[{"say": "Enjoy Paris!"}]]),
    ]),
]
CHECKPOINT_TURN = 1
"""After this many turns of the main session, the demo records a replay checkpoint."""
BRANCH = "museum-instead"
BRANCH_FROM_TURN = 2
BRANCH_TURN: _Turn = ("Forget the weather: which museum should I see?", [
    [{"say": "The Musée d'Orsay: impressionists in a former railway station."}],
])
"""After the main session, the demo branches it before turn 2 and asks this instead."""


@dataclass
class DemoResult:
    """What the scripted conversation did."""

    outputs: list[tuple[str, str, str]] = field(default_factory=list)
    """(session, user input, final output) per turn."""
    tool_executions: int = 0
    """How many times the weather function really ran (a cache hit does not run it)."""
    tool_runs: list[str] = field(default_factory=list)
    """The tool call ids for which the function ran, in order."""
    checkpoint_seq: int = 0
    checkpoint_items: list[Any] = field(default_factory=list)
    main_session: str = f"{TENANT}/{MAIN_SESSION}"
    user: str = f"{TENANT}/{USER}"
    tenant: str = TENANT
    """The tenant (and tool-cache scope) of every id."""
    sessions: list[str] = field(default_factory=list)
    """Every session the demo wrote to."""
    branch: str = BRANCH
    branch_items: list[Any] = field(default_factory=list)


def _scripted_model(turns: list[_Turn]) -> Any:
    from agents.testing import ScriptedModel, assistant_message, function_call

    steps: list[Any] = []
    for _, calls in turns:
        for outputs in calls:
            step: list[Any] = []
            for out in outputs:
                if "call" in out:
                    step.append(function_call(TOOL_NAME, out["call"], call_id=out["id"]))
                else:
                    step.append(assistant_message(out["say"]))
            steps.append(step)
    return ScriptedModel(steps)


async def run_conversation(
    client: Any,
    table: str,
    *,
    model_name: str | None = None,
    wrap_tool: ToolWrapper | None = None,
    on_turn: TurnCallback | None = None,
    after_turn: Callable[[], Awaitable[None]] | None = None,
    tenant: str = TENANT,
) -> DemoResult:
    """Run the demo conversation through ``Runner.run`` with ``DynamoDBSession``.

    Args:
        client: A boto3 (or aiobotocore) DynamoDB client.
        table: The convlog table (must exist).
        model_name: A real OpenAI model instead of the scripted one.
        wrap_tool: Wraps the weather ``FunctionTool``, e.g. with ``cached_tool``.
        on_turn: Called with (session, input, output) after each turn.
        after_turn: Awaited after each turn (e.g. to let the stream pump catch up).
        tenant: The prefix of every session and user id (``<tenant>/...``), and so the
            cache scope the projector fills; another tenant runs the demo again on one
            table without sharing anything with the first.
    """
    import agents

    agents.set_tracing_disabled(True)
    result = DemoResult(main_session=f"{tenant}/{MAIN_SESSION}", user=f"{tenant}/{USER}",
                        tenant=tenant)

    async def get_weather(call_id: str, city: str) -> str:
        result.tool_executions += 1
        result.tool_runs.append(call_id)
        forecast = FORECASTS.get(city.strip().lower(), "20°C, partly cloudy")
        return json.dumps({"city": city, "forecast": forecast}, ensure_ascii=False)

    async def get_weather_tool(ctx: ToolContext[Any], city: str) -> str:
        """Return today's weather forecast for a city.

        Args:
            ctx: The SDK's tool context (it names the call).
            city: The city, e.g. "Paris".
        """
        return await get_weather(ctx.tool_call_id, city)

    tool = agents.function_tool(get_weather_tool, name_override=TOOL_NAME)
    if wrap_tool is not None:
        tool = wrap_tool(tool)
    for base_id, user, turns in SCRIPT:
        session_id, user_id = f"{tenant}/{base_id}", f"{tenant}/{user}"
        result.sessions.append(session_id)
        branching = base_id == MAIN_SESSION
        model: Any = model_name or _scripted_model(turns + [BRANCH_TURN] * branching)
        agent = agents.Agent(name="travel", instructions=INSTRUCTIONS, tools=[tool], model=model)
        session = DynamoDBSession(session_id, client, table, user_id=user_id)
        for number, (text, _) in enumerate(turns, start=1):
            run = await agents.Runner.run(agent, text, session=session)
            await session.store_run_usage(run)
            output = str(run.final_output)
            result.outputs.append((session_id, text, output))
            if on_turn:
                on_turn(session_id, text, output)
            if after_turn:
                await after_turn()
            if base_id == MAIN_SESSION and number == CHECKPOINT_TURN:
                result.checkpoint_items = list(await session.get_items())
                head = await EventLog(client, table).read_head(session_id)
                result.checkpoint_seq = head.seq
        if branching:  # a branch before turn 2: no copy, its first event points at main
            await session.create_branch_from_turn(BRANCH_FROM_TURN, BRANCH)
            run = await agents.Runner.run(agent, BRANCH_TURN[0], session=session)
            await session.store_run_usage(run)
            if on_turn:
                on_turn(f"{session_id} @ {BRANCH}", BRANCH_TURN[0], str(run.final_output))
            if after_turn:
                await after_turn()
            result.branch_items = list(await session.get_items())
            result.sessions.append(session._sid())  # the branch's own partition
    return result
