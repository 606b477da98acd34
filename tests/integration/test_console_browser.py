"""The console page in a real headless browser: Debian's chromium driven by playwright.

.ci/run installs chromium with apt-get when it is missing and it runs as root; only a
machine with no chromium at all skips, and says why. The test saves screenshots (light and
dark) to build/console-screenshots/; with CONVLOG_UPDATE_SCREENSHOTS=1 it writes them to
docs/console/ instead, which the README shows (so a plain test run leaves the checkout clean).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from console_support import ACME_USER, CHAT, EDITED, FORGED_TEXT, TRIP, ConsoleData, seed

from convlog.console.server import ConsoleServer
from convlog.local import EmbeddedEndpoint

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / ("docs/console" if os.environ.get("CONVLOG_UPDATE_SCREENSHOTS") == "1"
                else "build/console-screenshots")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium on this machine: `apt-get install chromium` (.ci/run does it as root)",
)


@pytest.fixture(scope="module")
def server(endpoint: EmbeddedEndpoint) -> Iterator[ConsoleServer]:
    data: ConsoleData = seed(endpoint, "browser")
    with data.server() as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="convlog-chromium-") as profile, \
            sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": 1280, "height": 860},
        )
        yield context
        context.close()


def state_texts(page: Any) -> list[str]:
    return [t.strip() for t in page.locator("#state li").all_inner_texts()]


def test_sessions_timeline_replay_slider_and_a_flagged_edit(server: ConsoleServer,
                                                            browser: Any) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page()
    page.goto(server.url)
    page.get_by_label("User id").fill(ACME_USER)
    page.keyboard.press("Enter")
    sessions = page.locator("#sessions button")
    sessions.first.wait_for()
    ids = [sessions.nth(i).get_attribute("data-session") for i in range(sessions.count())]
    assert ids == [EDITED, CHAT, TRIP]
    assert "0 tokens in 0 requests" in sessions.first.inner_text()  # usage totals shown
    page.screenshot(path=str(SHOTS / "sessions.png"))

    # Open a session by keyboard: the first session button has the focus after loading.
    page.locator(f'#sessions button[data-session="{TRIP}"]').focus()
    page.keyboard.press("Enter")
    page.locator("#timeline li").nth(4).wait_for()
    assert page.locator("#timeline li").count() == 5
    assert page.locator("#verify").inner_text().startswith("Hash chain intact: 5 events")
    page.wait_for_selector('#state[data-seq="5"]')
    now = state_texts(page)
    assert len(now) == 4 and "visit the Louvre" in now[-1]

    # The slider has the focus; Home and two steps right show the items after seq 2.
    assert page.evaluate("document.activeElement.id") == "slider"
    page.keyboard.press("Home")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    page.wait_for_selector('#state[data-seq="2"]')
    at_2 = state_texts(page)
    assert at_2 != now and len(at_2) == 3
    assert "get_weather" in at_2[1] and "sunny, 21 C" in at_2[2]
    assert page.locator("#position").inner_text() == "after seq 2 of 5"
    page.screenshot(path=str(SHOTS / "replay.png"), full_page=True)

    # An event edited in the table is flagged, and so is everything after it.
    page.get_by_label("Session id").fill(EDITED)
    page.keyboard.press("Enter")
    broken = page.locator('#timeline li[data-status="broken"]')
    broken.wait_for()
    assert broken.count() == 1 and broken.get_attribute("data-seq") == "2"
    assert "broken link" in broken.inner_text() and FORGED_TEXT in broken.inner_text()
    assert page.locator('#timeline li[data-status="unverified"]').count() == 1
    # In the replayed state too, the item the edited event added is marked.
    forged = page.locator('#state li[data-proof="broken"]')
    assert forged.count() == 1 and FORGED_TEXT in forged.inner_text()
    assert page.locator('#state li[data-proof="ok"]').count() == 1
    verify = page.locator("#verify")
    assert "Broken link at seq 2 (changed)" in verify.inner_text()
    assert verify.get_attribute("class") == "broken"
    page.screenshot(path=str(SHOTS / "broken.png"), full_page=True)

    # The export link downloads the JSONL of the session.
    with page.expect_download() as download:
        page.locator("#export").click()
    assert download.value.suggested_filename.endswith(".jsonl")
    page.close()


def test_dark_scheme_is_readable(server: ConsoleServer, browser: Any) -> None:
    page = browser.new_page()
    page.emulate_media(color_scheme="dark")
    page.goto(server.url + f"?session={TRIP}")
    page.wait_for_selector('#state[data-seq="5"]')
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    color = page.evaluate("getComputedStyle(document.body).color")
    assert background == "rgb(13, 17, 23)" and color == "rgb(230, 237, 243)"
    page.screenshot(path=str(SHOTS / "dark.png"), full_page=True)
    page.close()
