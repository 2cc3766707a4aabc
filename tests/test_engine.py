"""The control loop against the real simulator over Modbus TCP on loopback.

The engine runs in the test's own uvloop; the simulated packs run in a background thread
(`FleetThread`), reached only through their TCP ports.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

import pytest
import uvloop

from gateway.balancer import NodeMode
from gateway.config import SiteConfig, load_config
from gateway.engine import Engine
from gateway.fleet import NodeState
from gateway.sim.fleet import Endpoint, FleetThread
from gateway.site_command import CommandUpdate
from gateway.snapshot import CycleSnapshot
from tests.conftest import PROFILES, StartFleet, free_port

pytestmark = pytest.mark.wire  # real stacks, sockets on loopback or child processes

T = TypeVar("T")


def site_config(tmp_path: Path, endpoints: Sequence[Endpoint], extra: str = "") -> SiteConfig:
    nodes = "\n".join(
        f"  - {{ id: {e.pack_id}, host: {e.host}, port: {e.port}, unit: {e.unit_id}, "
        f"profile: {e.profile_key} }}"
        for e in endpoints
    )
    text = (
        f"nodes:\n{nodes}\n"
        f"logging:\n  balancing_log: {tmp_path / 'balancing.log'}\n"
        f"status:\n  socket: {tmp_path / 'status.sock'}\n{extra}"
    )
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return load_config(path, [PROFILES])


def run_async(scenario: Callable[[], Awaitable[T]]) -> T:
    return uvloop.run(asyncio.wait_for(scenario(), timeout=60))


async def cycles(engine: Engine, count: int, pause_s: float = 0.1) -> list[CycleSnapshot]:
    snapshots = []
    for _ in range(count):
        snapshots.append(await engine.run_cycle())
        await asyncio.sleep(pause_s)
    return snapshots


async def until_online(engine: Engine, expected: int) -> CycleSnapshot:
    for _ in range(100):
        snapshot = await engine.run_cycle()
        if len(snapshot.fleet.online_nodes) == expected:
            return snapshot
        await asyncio.sleep(0.05)
    raise AssertionError(f"the nodes did not all come online: {engine.status()}")


def test_closed_loop_discharge_shrinks_spread_without_sign_flips(
    tmp_path: Path, start_sim_fleet: StartFleet
) -> None:
    fleet = start_sim_fleet(packs=4, speed=300.0)  # 0.1 s of wall time = 30 s of pack time
    engine = Engine(site_config(tmp_path, fleet.endpoints))

    async def scenario() -> tuple[CycleSnapshot, list[CycleSnapshot]]:
        await engine.start()
        first = await until_online(engine, 4)
        engine.submit(CommandUpdate(source="test", request_w=round(first.fleet.available_discharge_w / 3)))
        history = await cycles(engine, 60, pause_s=0.05)
        await engine.shutdown()
        return first, history

    first, history = run_async(scenario)
    assert first.fleet.soc_spread_pct is not None and first.fleet.soc_spread_pct > 50
    last = history[-1]
    assert last.fleet.soc_spread_pct is not None
    assert last.fleet.soc_spread_pct < first.fleet.soc_spread_pct - 5
    for node_id in (e.pack_id for e in fleet.endpoints):
        setpoints = [next(n.setpoint_w for n in s.dispatch.nodes if n.node_id == node_id) for s in history]
        assert all(value >= 0 for value in setpoints), (node_id, setpoints)
    # The highest pack carries the most, the lowest the least (energy above reserve).
    final = {n.node_id: n.setpoint_w for n in history[5].dispatch.nodes}
    assert final["pack-01"] > final["pack-02"] > final["pack-03"] > final["pack-04"]
    # Writes are paced: far fewer than one per node per cycle.
    assert sum(engine.fieldbus.writes_total().values()) < 4 * len(history) / 2


def test_commanded_request_reaches_the_packs_within_two_cycles(
    tmp_path: Path, start_sim_fleet: StartFleet
) -> None:
    fleet = start_sim_fleet(packs=3, speed=1.0)
    engine = Engine(site_config(tmp_path, fleet.endpoints))

    async def scenario() -> list[float]:
        await engine.start()
        await until_online(engine, 3)
        engine.submit(CommandUpdate(source="test", request_w=1500.0))
        await cycles(engine, 2, pause_s=0.0)
        delivered = [fleet.snapshot(e.pack_id).operating.power_w for e in fleet.endpoints]
        await engine.shutdown()
        return delivered

    delivered = run_async(scenario)
    assert abs(sum(delivered) - 1500.0) < 3 * 10.0  # within the setpoint deadband per pack


def test_shutdown_writes_the_safe_setpoint(tmp_path: Path, start_sim_fleet: StartFleet) -> None:
    fleet = start_sim_fleet(packs=2, speed=1.0)
    engine = Engine(site_config(tmp_path, fleet.endpoints, "command:\n  default_request_w: 800\n"))

    async def scenario() -> tuple[list[float], list[float]]:
        await engine.start()
        await until_online(engine, 2)
        await cycles(engine, 2, pause_s=0.0)
        running = [fleet.snapshot(e.pack_id).state.setpoint_w for e in fleet.endpoints]
        await engine.shutdown()
        stopped = [fleet.snapshot(e.pack_id).state.setpoint_w for e in fleet.endpoints]
        return running, stopped

    running, stopped = run_async(scenario)
    assert abs(sum(running) - 800.0) < 1.0
    assert stopped == [0.0, 0.0]


def test_a_dead_node_gets_no_share_and_the_others_carry_the_request(
    tmp_path: Path, start_sim_fleet: StartFleet
) -> None:
    fleet = start_sim_fleet(packs=2, speed=1.0)
    dead = Endpoint("pack-dead", "microstore/mp2000", "1.4.0", "127.0.0.1", free_port(), 1)
    engine = Engine(site_config(tmp_path, [*fleet.endpoints, dead], "command:\n  default_request_w: 1000\n"))

    async def scenario() -> CycleSnapshot:
        await engine.start()
        await until_online(engine, 2)
        snapshot = (await cycles(engine, 3, pause_s=0.0))[-1]
        await engine.shutdown()
        return snapshot

    snapshot = run_async(scenario)
    modes = {n.node_id: n for n in snapshot.dispatch.nodes}
    assert modes["pack-dead"].mode is NodeMode.OFFLINE
    assert modes["pack-dead"].setpoint_w == 0
    assert abs(modes["pack-01"].setpoint_w + modes["pack-02"].setpoint_w - 1000.0) < 1.0
    dead_state = snapshot.fleet.node("pack-dead")
    assert dead_state.error_code is not None


def test_balancing_log_records_changes_only(tmp_path: Path, sim_fleet: FleetThread) -> None:
    engine = Engine(site_config(tmp_path, sim_fleet.endpoints, "command:\n  default_request_w: 600\n"))

    async def scenario() -> None:
        await engine.start()
        await until_online(engine, 4)
        await cycles(engine, 10, pause_s=0.0)
        engine.submit(CommandUpdate(source="test", request_w=-400.0))
        await cycles(engine, 10, pause_s=0.0)
        await engine.shutdown()

    run_async(scenario)
    lines = [json.loads(line) for line in (tmp_path / "balancing.log").read_text().splitlines()]
    assert 2 <= len(lines) < 10  # the first decision, the change to charging, and little in between
    requests = [line["request_w"] for line in lines]
    assert 600.0 in requests and -400.0 in requests
    assert set(lines[-1]["nodes"]) == {"pack-01", "pack-02", "pack-03", "pack-04"}
    assert all(node["setpoint_w"] <= 0 for node in lines[-1]["nodes"].values())


def race(engine: Engine, updates: dict[str, CommandUpdate]) -> dict[str, str | None]:
    """Submit every update from its own thread, all released at once; each thread's answer."""
    answers: dict[str, str | None] = {}
    start = threading.Barrier(len(updates))

    def send(name: str, update: CommandUpdate) -> None:
        start.wait()
        answers[name] = engine.submit(update)

    threads = [threading.Thread(target=send, args=item) for item in updates.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5.0)
    return answers


def test_two_masters_setting_reserve_and_ceiling_at_once_cannot_both_be_told_yes(tmp_path: Path) -> None:
    """Each limit fits the values in force alone (reserve 80 < ceiling 95; reserve 10 < ceiling 81), not
    together: `submit` checks and applies in one step, so exactly one master hears yes, and the other
    the reason, from whichever thread they call."""
    node = Endpoint("pack-01", "microstore/mp2000", "1.4.0", "127.0.0.1", 1, 1)  # never polled here
    for _ in range(50):
        engine = Engine(site_config(tmp_path, [node]))
        answers = race(
            engine,
            {
                "reserve": CommandUpdate("a", reserve_pct=80.0),
                "ceiling": CommandUpdate("b", ceiling_pct=81.0),
            },
        )
        assert sorted(answer is None for answer in answers.values()) == [False, True], answers
        refusal = next(answer for answer in answers.values() if answer is not None)
        assert "must stay below ceiling_pct" in refusal
        params = engine.commands.params
        assert params.reserve_pct + params.reserve_hysteresis_pct < params.ceiling_pct
        assert (params.reserve_pct, params.ceiling_pct) in ((80.0, 95.0), (10.0, 81.0))


class NodeRecorder:
    """A publisher that takes node states: what arrived, in order, and when the snapshot came."""

    def __init__(self, *, broken: bool = False) -> None:
        self.events: list[str] = []
        self.broken = broken

    def node_arrived(self, state: NodeState) -> None:
        self.events.append(state.node_id)
        if self.broken:
            raise RuntimeError("a bug in a publisher")

    def publish(self, snapshot: CycleSnapshot) -> None:
        self.events.append(f"snapshot {snapshot.index}")


def test_each_node_goes_to_the_node_publishers_as_it_answers_before_the_snapshot(
    tmp_path: Path, start_sim_fleet: StartFleet, caplog: pytest.LogCaptureFixture
) -> None:
    fleet = start_sim_fleet(packs=3, speed=0.0)
    fleet.set_faults("pack-01", delay_ms=30)  # answers last (within its timeout)
    working, broken = NodeRecorder(), NodeRecorder(broken=True)
    engine = Engine(site_config(tmp_path, fleet.endpoints), publishers=[broken, working])

    async def scenario() -> None:
        await engine.start()
        await until_online(engine, 3)
        working.events.clear()
        await engine.run_cycle()
        await engine.shutdown()

    with caplog.at_level(logging.ERROR, logger="gateway.engine"):
        run_async(scenario)
    index = engine.last.index if engine.last is not None else -1
    assert sorted(working.events[:2]) == ["pack-02", "pack-03"]  # as they answered ...
    assert working.events[2:] == ["pack-01", f"snapshot {index}"]  # ... the slow one last, then the cycle
    assert broken.events[-1] == f"snapshot {index}"  # a failing publisher stopped neither
    failures = [r for r in caplog.records if "NodeRecorder failed" in r.getMessage()]
    assert len(failures) == index  # said once a cycle, not once per node
