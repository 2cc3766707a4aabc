"""The web view in headless Chromium (Debian's `chromium`, driven by Playwright), as an operator sees it:
every pack, a value that changes when the site request changes, the login beyond loopback, a screenshot."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import uvloop
from playwright.sync_api import Browser, Page, Playwright, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from gateway.northbound.web.login import hash_password
from gateway.site_command import CommandUpdate
from tests.conftest import REPO, StartFleet, free_port, socgw_command
from tests.northbound.dnp3.support import SUCCESS, analog_output_block, connected_master
from tests.northbound.web.support import Gateway, web_site_config
from tests.test_engine import run_async

pytestmark = pytest.mark.wire  # real stacks, sockets on loopback or child processes

PACKS = 4
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
WAIT_MS = 15_000
DEMO_START_S = 60.0
SITE_REQUEST_AO = 1000  # the default DNP3 map's site request, W
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
                engine.submit(CommandUpdate(source="test", request_w=request_w))

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


def _set_site_request_over_dnp3(port: int, request_w: int) -> None:
    async def operate() -> int:
        async with connected_master(port) as master:
            return await master.direct_operate(analog_output_block(SITE_REQUEST_AO, request_w))

    # Playwright's sync API keeps an event loop on this thread: the master runs on its own.
    with ThreadPoolExecutor(1) as thread:
        assert thread.submit(uvloop.run, asyncio.wait_for(operate(), 30)).result() == SUCCESS


def test_socgw_demo_serves_the_web_view_and_a_scada_request_shows_in_it(tmp_path: Path) -> None:
    web_port, dnp3_port = free_port(), free_port()
    command = socgw_command(
        "demo", "--no-ui", "--duration", "60", "--packs", str(PACKS), "--base-port", "0",
        "--dnp3-port", str(dnp3_port), "--mms-port", str(free_port()), "--web-port", str(web_port),
    )  # fmt: skip
    demo = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    seen: dict[str, Any] = {}
    try:
        assert demo.stdout is not None and demo.stderr is not None
        deadline = time.monotonic() + DEMO_START_S
        while time.monotonic() < deadline and "address" not in seen:
            line = demo.stderr.readline()
            assert line, f"the demo exited with {demo.wait()}"
            if "web view on " in line:
                seen["address"] = line.split("web view on ", 1)[1].strip()
        with sync_playwright() as playwright:
            browser = _launch(playwright)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.goto(seen["address"])
                page.wait_for_function(
                    f"document.querySelectorAll('#fleet tbody tr').length === {PACKS}", timeout=WAIT_MS
                )
                seen["nodes"] = page.locator("#fleet tbody td.node").all_inner_texts()
                _set_site_request_over_dnp3(dnp3_port, -1500)
                page.wait_for_function(
                    "document.querySelector('#request').textContent === '-1500 W'", timeout=WAIT_MS
                )
                page.wait_for_function(
                    f"{SETPOINT_CELLS}.every(cell => cell.textContent.startsWith('-'))", timeout=WAIT_MS
                )
                page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
            finally:
                browser.close()
    finally:
        demo.terminate()
        demo.communicate(timeout=30)
    assert seen["address"] == f"http://127.0.0.1:{web_port}/"
    assert sorted(seen["nodes"]) == [f"pack-0{i}" for i in range(1, PACKS + 1)]
    assert (tmp_path / "demo.png").stat().st_size > 20_000
