"""Ten start/stop cycles of the MMS server in one process end clean: each run serves and takes controls
(so its handlers are the live ones, not a stale registration of an earlier run), and nothing is left
behind: no thread, no bound port, no C stderr capture. A start that fails leaves nothing either."""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path

import pytest
import uvloop

from gateway.config import load_config
from gateway.engine import Engine
from gateway.northbound.adapter import NorthboundError
from gateway.northbound.iec61850 import create
from gateway.northbound.iec61850.stderr import NativeStderr
from tests.conftest import LOOPBACK, PROFILES, StartFleet, free_port
from tests.northbound.iec61850.helpers import iec_section
from tests.northbound.iec61850.test_controls import client, read_until
from tests.test_engine import site_config, until_online

pytestmark = pytest.mark.wire  # real stacks, sockets on loopback or child processes

RUNS = 10


def iec61850_threads() -> list[str]:
    return [thread.name for thread in threading.enumerate() if thread.name.startswith("socgw-iec61850")]


def test_ten_start_stop_cycles_in_one_process_end_clean(tmp_path: Path, start_sim_fleet: StartFleet) -> None:
    fleet = start_sim_fleet(packs=2, speed=0.0)
    port = free_port()
    config = site_config(tmp_path, fleet.endpoints, iec_section(port))
    engine = Engine(config)

    async def scenario() -> list[tuple[float, float]]:
        await engine.start()
        await until_online(engine, 2)
        seen: list[tuple[float, float]] = []
        try:
            for run in range(RUNS):
                adapter = create(config, engine.submit)
                assert adapter is not None
                adapter.start()
                engine.publishers.append(adapter)
                try:
                    request_w = 100.0 + run
                    answer = await client(port, "operate", "SOCGWFLEET/DRCC1.OutWSet", str(request_w))
                    assert answer["ok"], (run, answer)
                    snapshot = await engine.run_cycle()
                    values = await read_until(port, [request_w], "SOCGWFLEET/DRCC1.OutWSet.mxVal.f", "MX")
                    seen.append((snapshot.command.request_w, values[0]))
                finally:
                    engine.publishers.remove(adapter)
                    adapter.stop()
                assert iec61850_threads() == [], run
        finally:
            await engine.shutdown()
        return seen

    seen = uvloop.run(asyncio.wait_for(scenario(), timeout=110))
    assert seen == [(100.0 + run, 100.0 + run) for run in range(RUNS)]
    assert iec61850_threads() == []
    assert NativeStderr._users == 0
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT, not past a listener
        probe.bind((LOOPBACK, port))  # the server released its port


def test_a_port_in_use_stops_start_up_naming_it_and_leaves_nothing(tmp_path: Path) -> None:
    nodes = "nodes:\n  - { id: pack-01, host: 127.0.0.1, port: 15020, unit: 1, profile: microstore/mp2000 }\n"
    config_path = tmp_path / "gateway.yaml"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind((LOOPBACK, 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        config_path.write_text(nodes + iec_section(port), encoding="utf-8")
        adapter = create(load_config(config_path, [PROFILES]), lambda update, apply=True: None)
        assert adapter is not None
        with pytest.raises(NorthboundError, match=f"127.0.0.1:{port}: the port is in use"):
            adapter.start()
    assert iec61850_threads() == []
    assert NativeStderr._users == 0
    adapter.stop()  # stopping what never started is harmless
