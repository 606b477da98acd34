"""Issue 11: the console's purge gives the CLI's choice for shared sessions (API and page).

A user's purge plan lists the sessions that also hold other users' events, with those
users' event counts; the purge then needs ``shared``: ``session`` deletes them whole,
``content`` erases only that user's content (the chain still verifies). With a signer,
what the purge erases is signed into the anchor digests. Over HTTP (uvicorn) against the
moto server; the page runs in headless chromium like ``test_console_browser``.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import requests
from cli_helpers import scan
from console_support import ACME_USER, CHAT, EDITED, TRIP, ConsoleData, project, seed
from projection_support import dump
from test_console_browser import CHROMIUM, browser

from convlog.anchor import DigestStore
from convlog.anchor_run import create_anchor_resources
from convlog.audit import verify_session
from convlog.local import EmbeddedEndpoint
from convlog.purge_record import PurgeSigner
from eventstore import DynamoDBSession
from eventstore.log import EventLog

__all__ = ["browser"]  # the fixture, shared with the browser test

BOB = "acme/bob"
SSN = "078-05-1120"


def _team(data: ConsoleData) -> str:
    team = f"acme/team-{uuid.uuid4().hex[:6]}"

    async def go() -> None:
        for user, text in ((ACME_USER, f"alice: my SSN is {SSN}"), (BOB, "bob: hi"),
                           (BOB, "bob: see you"), (ACME_USER, "alice: thanks")):
            await DynamoDBSession(team, data.client, data.table, user_id=user).add_items(
                [{"role": "user", "content": text}])

    asyncio.run(go())
    project(data)
    return team


def _post(url: str, path: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(url + "api/admin/" + path, json=body, timeout=60)


def test_a_users_plan_lists_shared_sessions_and_the_purge_needs_a_choice(
    endpoint: EmbeddedEndpoint,
) -> None:
    data = seed(endpoint, "shared")
    team = _team(data)
    with data.server(admin=True) as server:
        plan = _post(server.url, "purge/plan", {"user_id": ACME_USER}).json()
        assert sorted(plan["sessions"]) == sorted([CHAT, EDITED, TRIP, team])
        assert plan["shared"] == {team: {BOB: 2}}
        before = len(scan(data.client, data.table))
        blind = _post(server.url, "purge", {"user_id": ACME_USER, "confirm": plan["confirm"]})
        assert blind.status_code == 400 and "shared=" in blind.json()["detail"]
        assert len(scan(data.client, data.table)) == before  # nothing deleted
        done = _post(server.url, "purge", {"user_id": ACME_USER, "confirm": plan["confirm"],
                                           "shared": "content"}).json()
        assert sorted(done["sessions"]) == sorted([CHAT, EDITED, TRIP])
        assert done["erased_content"] == [team] and done["erased_events"] == 2
        assert done["signed_digests"] == []  # no digests configured
        assert SSN not in dump(scan(data.client, data.table))
        items = requests.get(server.url + "api/items", params={"session_id": team},
                             timeout=30).json()["items"]
        assert [i["content"] for i in items] == ["[erased]", "bob: hi", "bob: see you",
                                                 "[erased]"]
        verify = requests.get(server.url + "api/verify", params={"session_id": team},
                              timeout=30).json()
        assert verify["ok"] and verify["events"] == 4


def test_shared_session_chosen_whole_goes_with_the_other_users_events(
    endpoint: EmbeddedEndpoint,
) -> None:
    data = seed(endpoint, "whole")
    team = _team(data)
    s3, kms = endpoint.client("s3"), endpoint.client("kms")
    bucket = f"digests-{uuid.uuid4().hex[:10]}"
    store = DigestStore(s3, kms, bucket, create_anchor_resources(s3, kms, bucket), data.table)
    with data.server(admin=True, signer=PurgeSigner(store, by="console-test")) as server:
        plan = _post(server.url, "purge/plan", {"user_id": ACME_USER}).json()
        done = _post(server.url, "purge", {"user_id": ACME_USER, "confirm": plan["confirm"],
                                           "shared": "session"}).json()
        assert sorted(done["sessions"]) == sorted([CHAT, EDITED, TRIP, team])
        assert done["erased_content"] == [] and done["signed_digests"] == [1]
    assert "bob: hi" not in dump(scan(data.client, data.table))
    anchors = store.load()
    assert anchors.problem is None and anchors.purges[team][0].through == 4
    report = asyncio.run(verify_session(EventLog(data.client, data.table), team,
                                        purges=anchors.purges[team]))
    assert report.ok and report.events == 0 and report.erased_by is not None


@pytest.fixture(scope="module")
def page_data(endpoint: EmbeddedEndpoint) -> tuple[ConsoleData, str]:
    """Seeded before the browser starts (playwright's sync API runs an event loop)."""
    data = seed(endpoint, "page")
    return data, _team(data)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine")
def test_the_page_lists_other_users_items_and_asks_before_purging(
    page_data: tuple[ConsoleData, str], browser: Any,
) -> None:
    from playwright.sync_api import expect

    data, team = page_data
    with data.server(admin=True) as server:
        page = browser.new_page()
        page.goto(server.url)
        page.locator("#purge").wait_for()  # shown to an admin console only
        page.get_by_label("Id to erase").fill(ACME_USER)
        page.get_by_role("button", name="Plan purge").click()
        row = page.locator(f'#purge-sessions li[data-session="{team}"]')
        row.wait_for()
        assert "acme/bob: 2 events" in row.inner_text()
        assert page.locator("#purge-sessions li").count() == 4
        page.get_by_role("button", name="Purge now").click()
        expect(page.locator("#purge-error")).to_contain_text("Choose what happens")
        assert SSN in dump(scan(data.client, data.table))  # nothing erased yet
        page.get_by_label("erase only this user's content", exact=False).check()
        page.get_by_role("button", name="Purge now").click()
        expect(page.locator("#purge-result")).to_contain_text("Erased", timeout=60_000)
        result = page.locator("#purge-result").inner_text()
        assert f"Erased the content of {ACME_USER} in {team} (2 events)" in result
        assert SSN not in dump(scan(data.client, data.table))
        page.close()
    with data.server() as read_only:
        page = browser.new_page()
        page.goto(read_only.url)
        expect(page.locator("#info")).to_contain_text("read-only")
        assert page.locator("#purge").is_hidden()
        page.close()
