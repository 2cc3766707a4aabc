"""The web view in headless Chromium (Debian's `chromium`, driven by Playwright), as an operator sees it:
every pack, a value that changes when the site request changes, the login beyond loopback, a screenshot."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, Playwright, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from gateway.northbound.web.login import hash_password
from gateway.site_command import CommandUpdate
from tests.conftest import StartFleet
from tests.northbound.web.support import Gateway, web_site_config
from tests.test_engine import run_async

PACKS = 4
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
WAIT_MS = 15_000
SETPOINT_CELLS = "[...document.querySelectorAll('#fleet tbody td.setpoint')]"


def _launch(playwright: Playwright) -> Browser:
    # As root (the test machines) Chromium's sandbox cannot start; the page is our own.
    return playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])


def _request_shown(page: Page) -> str:
    return page.inner_text("#request")


def _browse(url: str, change_request: Callable[[float], None], screenshot: Path) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    with sync_playwright() as playwright:
        browser = _launch(playwright)
        try:
            anonymous = browser.new_context()
            seen["anonymous status"] = anonymous.request.get(url).status
            try:  # Chromium without credentials: the 401 ends the navigation
                anonymous.new_page().goto(url)
                seen["anonymous page"] = "shown"
            except PlaywrightError as error:
                seen["anonymous page"] = error.message
            context = browser.new_context(
                http_credentials={"username": "operator", "password": "correct horse"},
                viewport={"width": 1280, "height": 1000},
            )
            page = context.new_page()
            page.goto(url)
            page.wait_for_function(
                f"document.querySelectorAll('#fleet tbody tr').length === {PACKS}", timeout=WAIT_MS
            )
            seen["nodes"] = page.locator("#fleet tbody td.node").all_inner_texts()
            seen["request before"] = _request_shown(page)
            seen["setpoints before"] = page.locator("#fleet tbody td.setpoint").all_inner_texts()
            change_request(-1200.0)  # charge instead of discharge
            page.wait_for_function(
                "document.querySelector('#request').textContent === '-1200 W'", timeout=WAIT_MS
            )
            page.wait_for_function(
                f"{SETPOINT_CELLS}.every(cell => cell.textContent.startsWith('-'))", timeout=WAIT_MS
            )
            seen["request after"] = _request_shown(page)
            seen["setpoints after"] = page.locator("#fleet tbody td.setpoint").all_inner_texts()
            seen["chart lines"] = page.locator("#chart polyline").count()
            seen["events"] = page.inner_text("#events")
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return seen


def test_the_web_view_shows_every_pack_and_follows_a_new_site_request(
    tmp_path: Path, start_sim_fleet: StartFleet, free_tcp_port: int
) -> None:
    fleet = start_sim_fleet(packs=PACKS, speed=60.0)
    login = f"    login: {{user: operator, password_hash: '{hash_password('correct horse')}'}}\n"
    config = web_site_config(tmp_path, fleet.endpoints, free_tcp_port, login)
    screenshot = tmp_path / "web-view.png"

    async def scenario() -> dict[str, Any]:
        async with Gateway(config) as gateway:
            engine = gateway.engine
            await gateway.online(PACKS)
            engine.submit(CommandUpdate(source="test", request_w=2000.0))
            await gateway.cycles(3)
            stop = asyncio.Event()

            async def run() -> None:
                while not stop.is_set():
                    await engine.run_cycle()
                    await asyncio.sleep(0.1)

            cycling = asyncio.create_task(run())

            def change_request(request_w: float) -> None:  # from the browser's thread
                engine.submit_threadsafe(CommandUpdate(source="test", request_w=request_w))

            try:
                return await asyncio.to_thread(
                    _browse, gateway.web.settings.address, change_request, screenshot
                )
            finally:
                stop.set()
                await cycling

    seen = run_async(scenario)
    assert seen["anonymous status"] == 401
    assert "ERR_INVALID_AUTH_CREDENTIALS" in str(seen["anonymous page"])
    assert sorted(seen["nodes"]) == [f"pack-0{i}" for i in range(1, PACKS + 1)]
    assert seen["request before"] == "2000 W" and seen["request after"] == "-1200 W"
    assert all(not text.startswith("-") for text in seen["setpoints before"])
    assert all(text.startswith("-") for text in seen["setpoints after"])
    assert seen["chart lines"] == PACKS
    assert "site request 2000 W → -1200 W" in str(seen["events"])
    assert screenshot.stat().st_size > 20_000
