"""The web adapter serving a running gateway: the login, the page's files, the state, faults counted."""

from __future__ import annotations

import asyncio
import ssl
import urllib.error
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.northbound.web.login import hash_password
from tests.conftest import StartFleet
from tests.northbound.web.support import Gateway, get, self_signed, web_site_config
from tests.test_engine import run_async

pytestmark = pytest.mark.wire  # real stacks, sockets on loopback or child processes

PACKS = 2


def test_a_login_guards_every_page_and_the_metrics(
    tmp_path: Path, start_sim_fleet: StartFleet, free_tcp_port: int
) -> None:
    fleet = start_sim_fleet(packs=PACKS)
    login = f"    login: {{user: operator, password_hash: '{hash_password('correct horse')}'}}\n"
    config = web_site_config(tmp_path, fleet.endpoints, free_tcp_port, login)

    async def scenario() -> dict[str, int]:
        async with Gateway(config) as gateway:
            await gateway.online(PACKS)
            await gateway.cycles(2)
            statuses = {}
            for path in ("/", "/static/app.js", "/api/state", "/metrics", "/events"):
                statuses[f"{path} anonymous"] = (await gateway.get(path))[0]
                statuses[f"{path} wrong"] = (await gateway.get(path, ("operator", "wrong horse")))[0]
            for path in ("/", "/static/app.js", "/static/style.css", "/api/state", "/metrics"):
                statuses[path] = (await gateway.get(path, ("operator", "correct horse")))[0]
            statuses["/static/missing.js"] = (
                await gateway.get("/static/missing.js", ("operator", "correct horse"))
            )[0]
            return statuses

    statuses = run_async(scenario)
    assert {key: value for key, value in statuses.items() if " " in key} == {
        key: 401 for key in statuses if " " in key
    }
    assert (
        statuses["/"] == statuses["/static/app.js"] == statuses["/api/state"] == statuses["/metrics"] == 200
    )
    assert statuses["/static/style.css"] == 200 and statuses["/static/missing.js"] == 404


def test_a_pack_that_stops_answering_is_counted_as_a_fault_and_shown(
    tmp_path: Path, start_sim_fleet: StartFleet, free_tcp_port: int
) -> None:
    fleet = start_sim_fleet(packs=PACKS)
    config = web_site_config(tmp_path, fleet.endpoints, free_tcp_port)

    async def scenario() -> tuple[str, str]:
        async with Gateway(config) as gateway:
            await gateway.online(PACKS)
            fleet.set_faults("pack-02", silent=True)
            await gateway.cycles(15)
            return (await gateway.get("/metrics"))[1], (await gateway.get("/api/state"))[1]

    metrics, state = run_async(scenario)
    faults = {
        (sample.labels["node"], sample.labels["code"]): sample.value
        for family in text_string_to_metric_families(metrics)
        if family.name == "socgw_node_faults"
        for sample in family.samples
        if sample.name == "socgw_node_faults_total"
    }
    assert faults.get(("pack-02", "E_MB_TIMEOUT")) == 1.0, faults
    assert not any(node == "pack-01" for node, _ in faults)
    assert "pack-02" in state and "E_MB_TIMEOUT raised" in state


def test_with_tls_the_view_and_the_metrics_are_served_over_https_only(
    tmp_path: Path, start_sim_fleet: StartFleet, free_tcp_port: int
) -> None:
    fleet = start_sim_fleet(packs=PACKS)
    cert, _ = self_signed(tmp_path)
    config = web_site_config(
        tmp_path, fleet.endpoints, free_tcp_port, "    tls: {cert: web.pem, key: web.key}\n"
    )
    trusting = ssl.create_default_context(cafile=str(cert))

    async def scenario() -> tuple[str, int, str, str]:
        async with Gateway(config) as gateway:
            await gateway.online(PACKS)
            await gateway.cycles(2)
            status, metrics = await gateway.get("/metrics", context=trusting)
            try:
                plain = await asyncio.to_thread(get, f"http://127.0.0.1:{free_tcp_port}/metrics")
                refused = f"answered {plain[0]}"
            except (urllib.error.URLError, ConnectionError) as error:
                refused = type(error).__name__
            return gateway.web.settings.address, status, metrics, refused

    address, status, metrics, plain = run_async(scenario)
    assert address == f"https://127.0.0.1:{free_tcp_port}/"
    assert status == 200 and "socgw_node_soc_ratio{" in metrics
    assert plain != "answered 200"
