"""The console API over HTTP (uvicorn on 127.0.0.1) against the moto server.

Timelines with item changes and chain status, items at a seq or a time, tool-cache
entries, JSONL export, the admin-only confirmed purge, and tenant safety: with a client
whose every request is judged by the IAM evaluator of test_template_iam against the
tenant policy, the console never returns another tenant's data.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError
from console_support import (
    ACME_USER,
    CHAT,
    EDITED,
    EDITED_SEQ,
    FORGED_TEXT,
    GLOBEX_USER,
    OTHER,
    TRIP,
    ConsoleData,
    seed,
)
from test_template_iam import Recorder, accesses, allowed, load

from convlog.audit import import_line
from convlog.console.server import ConsoleServer
from convlog.local import EmbeddedEndpoint
from eventstore import DynamoDBSession


@pytest.fixture(scope="module")
def data(endpoint: EmbeddedEndpoint) -> ConsoleData:
    return seed(endpoint)


@pytest.fixture(scope="module")
def url(data: ConsoleData) -> Iterator[str]:
    with data.server() as server:
        yield server.url


def get(url: str, path: str, **params: Any) -> requests.Response:
    return requests.get(url + "api/" + path, params=params, timeout=30)


def test_sessions_of_a_user_newest_first_and_paged(url: str) -> None:
    first = get(url, "sessions", user_id=ACME_USER, limit=2).json()
    assert [s["session_id"] for s in first["sessions"]] == [EDITED, CHAT]
    assert first["cursor"]
    rest = get(url, "sessions", user_id=ACME_USER, limit=2, cursor=first["cursor"]).json()
    assert [s["session_id"] for s in rest["sessions"]] == [TRIP]
    assert rest["sessions"][0]["title"] == "Plan a day in Paris"
    assert rest["sessions"][0]["item_count"] == 4


def test_sessions_carry_their_usage_totals(data: ConsoleData, url: str) -> None:
    from types import SimpleNamespace

    from agents.usage import Usage
    from console_support import project

    user = "acme/usage-reader"
    session = DynamoDBSession("acme/usage-1", data.client, data.table, user_id=user)
    run = SimpleNamespace(context_wrapper=SimpleNamespace(usage=Usage(
        requests=2, input_tokens=120, output_tokens=30, total_tokens=150)))
    asyncio.run(session.add_items([{"role": "user", "content": "hi"}]))
    asyncio.run(session.store_run_usage(run))
    project(data)
    page = get(url, "sessions", user_id=user).json()
    [listed] = page["sessions"]
    assert listed["usage"] == {"requests": 2, "input_tokens": 120, "output_tokens": 30,
                               "total_tokens": 150}
    assert page["user_usage"] == listed["usage"]  # the user's totals, kept by the projector
    [quiet] = get(url, "sessions", user_id=ACME_USER, limit=1).json()["sessions"]
    assert quiet["usage"]["total_tokens"] == 0


def test_timeline_says_what_each_event_changed(url: str) -> None:
    timeline = get(url, "timeline", session_id=TRIP).json()
    events = timeline["events"]
    assert [e["kind"] for e in events] == [
        "items_added", "items_added", "items_added", "item_popped", "items_added"]
    assert all(e["status"] == "ok" for e in events) and timeline["verify"]["ok"]
    assert [(e["change"]["count_before"], e["change"]["count_after"]) for e in events] == [
        (0, 1), (1, 3), (3, 4), (4, 3), (3, 4)]
    assert events[3]["change"]["removed"] == [
        {"role": "assistant", "content": "Sunny: walk along the Seine."}]
    assert events[4]["change"]["added"] == [
        {"role": "assistant", "content": "Sunny: visit the Louvre."}]
    assert events[1]["prev_hash"] == events[0]["hash"]


def test_an_edited_event_is_the_broken_link_and_later_ones_unverified(url: str) -> None:
    timeline = get(url, "timeline", session_id=EDITED).json()
    assert [e["status"] for e in timeline["events"]] == ["ok", "broken", "unverified"]
    assert timeline["events"][1]["change"]["added"][0]["content"] == FORGED_TEXT
    verify = get(url, "verify", session_id=EDITED).json()
    assert verify["ok"] is False
    assert verify["problem"]["seq"] == EDITED_SEQ and verify["problem"]["kind"] == "changed"


def test_items_at_a_seq_and_at_a_time(url: str) -> None:
    at_4 = get(url, "items", session_id=TRIP, at_seq=4).json()
    assert at_4["at_seq"] == 4 and at_4["count"] == 3 and at_4["seqs"] == [1, 2, 2]
    assert [i.get("type", i.get("role")) for i in at_4["items"]] == [
        "user", "function_call", "function_call_output"]
    assert get(url, "items", session_id=TRIP, at_seq=0).json()["items"] == []
    before = get(url, "items", session_id=TRIP, as_of="2000-01-01T00:00:00Z").json()
    assert before == {"session_id": TRIP, "at_seq": 0, "count": 0, "items": [], "seqs": []}
    now = get(url, "items", session_id=TRIP).json()
    assert now["at_seq"] == 5 and now["items"][-1]["content"] == "Sunny: visit the Louvre."
    assert get(url, "items", session_id=TRIP, at_seq=4, as_of="2999-01-01T00:00").json() == at_4
    assert get(url, "items", session_id=TRIP, at_seq=4, as_of="2000-01-01").json() == before
    assert get(url, "items", session_id=TRIP, as_of="yesterday").status_code == 422


def test_tool_entries_of_a_session_only(url: str) -> None:
    entries = get(url, "tools", session_id=TRIP).json()["entries"]
    assert [(e["tool_name"], e["output"], e["call_id"]) for e in entries] == [
        ("get_weather", "sunny, 21 C", "c1")]
    assert get(url, "tools", session_id=CHAT).json()["entries"] == []


def test_export_is_jsonl_that_imports_back(url: str) -> None:
    response = get(url, "export", session_id=TRIP)
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert "attachment" in response.headers["content-disposition"]
    lines = [import_line(json.loads(line)) for line in response.text.splitlines()]
    assert [s.event.seq for s in lines] == [1, 2, 3, 4, 5]


def test_unknown_session_is_404_and_headers_close_the_page(url: str) -> None:
    response = get(url, "timeline", session_id="no-such-session")
    assert response.status_code == 404 and response.json()["error"] == "not_found"
    page = requests.get(url, timeout=30)
    assert page.status_code == 200 and "replay" in page.text.lower()
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "access-control-allow-origin" not in {k.lower() for k in page.headers}


def test_purge_is_refused_by_a_read_only_console(url: str, data: ConsoleData) -> None:
    for path, body in (("admin/purge/plan", {"session_id": CHAT}),
                       ("admin/purge", {"session_id": CHAT, "confirm": "x" * 32})):
        response = requests.post(url + "api/" + path, json=body, timeout=30)
        assert response.status_code == 403, response.text
    assert get(url, "verify", session_id=CHAT).json()["events"] == 1


def test_admin_purge_needs_the_token_of_the_current_plan(endpoint: EmbeddedEndpoint) -> None:
    data = seed(endpoint, "purge")
    with data.server(admin=True) as server:
        api = server.url + "api/admin/purge"
        plan = requests.post(api + "/plan", json={"session_id": TRIP}, timeout=30).json()
        assert plan["sessions"] == [TRIP] and plan["counts"]["events"] == 5
        assert plan["counts"]["tool-cache entries"] == 1
        wrong = requests.post(api, json={"session_id": TRIP, "confirm": "0" * 32}, timeout=30)
        assert wrong.status_code == 409
        assert get(server.url, "verify", session_id=TRIP).status_code == 200
        both = requests.post(api + "/plan", json={"session_id": TRIP, "user_id": ACME_USER},
                             timeout=30)
        assert both.status_code == 422
        done = requests.post(api, json={"session_id": TRIP, "confirm": plan["confirm"]},
                             timeout=30).json()
        assert done == {"sessions": [TRIP], "deleted": plan["items"], "erased_content": [],
                        "erased_events": 0, "signed_digests": []}
        assert get(server.url, "verify", session_id=TRIP).status_code == 404
        assert get(server.url, "tools", session_id=CHAT).json()["entries"] == []
        again = requests.post(api + "/plan", json={"session_id": TRIP}, timeout=30)
        assert again.status_code == 404


# ---- tenant safety ----------------------------------------------------------------------


class TenantRole:
    """A client that behaves as if it had the tenant policy: denied requests never leave."""

    def __init__(self, endpoint: EmbeddedEndpoint, tenant: str) -> None:
        self.client = endpoint.client("dynamodb")
        self.tenant = tenant
        self.policy = load("tenant-isolation-policy.json")
        self.recorder = Recorder().attach(self.client.meta.events)
        self.denied: list[Any] = []
        self.client.meta.events.register("before-send.dynamodb", self._enforce)

    def _enforce(self, request: Any, **_: Any) -> None:
        operation, body = self.recorder.requests[-1]  # the recorder runs first
        refused = [a for a in accesses(operation, body)
                   if not allowed(self.policy, a, {"tenant": self.tenant})]
        if refused:
            self.denied.extend(refused)
            raise ClientError({"Error": {"Code": "AccessDeniedException",
                                         "Message": f"not authorized: {refused[0].action}"}},
                              operation)


def test_tenant_role_never_sees_another_tenants_sessions(endpoint: EmbeddedEndpoint,
                                                         data: ConsoleData) -> None:
    role = TenantRole(endpoint, "acme")
    with ConsoleServer(ConsoleData(endpoint, role.client, data.table).app(tenant="acme")) as s:
        own = get(s.url, "sessions", user_id=ACME_USER, limit=50).json()["sessions"]
        assert {x["session_id"] for x in own} == {TRIP, CHAT, EDITED}
        assert get(s.url, "timeline", session_id=TRIP).status_code == 200
        assert get(s.url, "items", session_id=TRIP, at_seq=2).json()["count"] == 3
        assert get(s.url, "export", session_id=TRIP).status_code == 200
        answers = [get(s.url, "sessions", user_id=GLOBEX_USER)]
        for path in ("timeline", "items", "verify", "tools", "export"):
            answers.append(get(s.url, path, session_id=OTHER))
        # An id that only starts like the tenant ("acme" vs "acmex") is not the tenant's.
        answers.append(get(s.url, "timeline", session_id="acmex/" + OTHER))
        # The tool cache of acme's sessions is acme's scope (TOOL#acme/...): granted.
        tools = get(s.url, "tools", session_id=TRIP)
    assert [a.status_code for a in answers] == [404] * 7
    assert tools.status_code == 200 and len(tools.json()["entries"]) == 1
    assert not any("globex" in a.text.replace(OTHER, "").replace(GLOBEX_USER, "")
                   for a in answers)
    assert all("quarterly" not in a.text for a in answers)
    # Every request the console sent for acme is one the tenant policy allows.
    assert role.denied == []
    sent = role.recorder.accesses()
    assert sent and all(allowed(role.policy, a, {"tenant": "acme"}) for a in sent)
    assert not any(k.startswith(("SESSION#globex", "USER#globex"))
                   for a in role.recorder.accesses() for k in a.leading_keys)


def test_the_evaluator_role_would_refuse_another_tenants_reads(endpoint: EmbeddedEndpoint,
                                                               data: ConsoleData) -> None:
    role = TenantRole(endpoint, "acme")
    # A console without a tenant filter, running with acme's role: the role still refuses.
    with ConsoleServer(ConsoleData(endpoint, role.client, data.table).app()) as s:
        assert get(s.url, "timeline", session_id=OTHER).status_code == 403
        assert get(s.url, "sessions", user_id=GLOBEX_USER).status_code == 403
    assert role.denied


def test_readme_console_section_shows_the_screenshots_the_browser_test_takes() -> None:
    root = Path(__file__).resolve().parents[2]
    text = (root / "README.md").read_text(encoding="utf-8")
    section = text.split("<!-- section: console (owner: console) -->")[1].split(
        "<!-- /section: console -->")[0]
    shots = re.findall(r"!\[[^]]*\]\((docs/console/[\w.-]+\.png)\)", section)
    assert sorted(shots) == ["docs/console/broken.png", "docs/console/dark.png",
                             "docs/console/replay.png", "docs/console/sessions.png"]
    assert all((root / shot).is_file() for shot in shots)
    browser_test = (root / "tests/integration/test_console_browser.py").read_text()
    assert all(Path(shot).name in browser_test for shot in shots)
