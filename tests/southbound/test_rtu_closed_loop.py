"""The closed loop on one RS-485 line: four simulated packs as units 1-4 of a serial line (a pseudo-terminal
at 19200 baud with the wire's timing), the engine polling them in the line plan's turns and balancing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import uvloop

from gateway.config import load_config
from gateway.engine import Engine
from gateway.sim.rtu import RtuLine
from gateway.site_command import CommandUpdate
from gateway.snapshot import CycleSnapshot
from gateway.southbound.fieldbus import LocalFieldbus
from gateway.southbound.line import LineMember, plan_lines
from tests.conftest import PROFILES, StartFleet

pytestmark = pytest.mark.wire

CYCLE_S = 0.1


def test_four_packs_on_one_line_balance_within_the_planned_telemetry_age(
    tmp_path: Path, start_sim_fleet: StartFleet
) -> None:
    fleet = start_sim_fleet(packs=4, speed=60.0)
    line: RtuLine = fleet.run(fleet.fleet.open_line(baud=19200))
    nodes = "\n".join(
        f"  - {{ id: pack-0{unit}, transport: serial, device: {line.device}, baud: 19200, unit: {unit}, "
        "profile: microstore/mp2000 }"
        for unit in range(1, 5)
    )
    path = tmp_path / "gateway.yaml"
    path.write_text(f"nodes:\n{nodes}\nstatus:\n  socket: {tmp_path / 'status.sock'}\n")
    config = load_config(path, [PROFILES])
    bus = LocalFieldbus.from_config(config)
    engine = Engine(config, fieldbus=bus)
    (plan,) = plan_lines([LineMember(s.node_id, s.target, s.profile) for s in bus.sessions], CYCLE_S)
    assert plan.meets(config.balancer.max_telemetry_age_s), plan.describe()

    def writes() -> dict[str, int]:
        return {session.node_id: session.writes.writes_total for session in bus.sessions}

    async def scenario() -> tuple[list[CycleSnapshot], float, dict[str, int]]:
        await engine.start()
        for _ in range(50):
            first = await engine.run_cycle()
            if len(first.fleet.online_nodes) == 4:
                break
            await asyncio.sleep(CYCLE_S)
        engine.submit(CommandUpdate(source="test", request_w=round(first.fleet.available_discharge_w / 3)))
        history = []
        before = writes()
        started = time.monotonic()
        for _ in range(100):
            cycle_started = time.monotonic()
            history.append(await engine.run_cycle())
            await asyncio.sleep(max(0.0, CYCLE_S - (time.monotonic() - cycle_started)))
        elapsed = time.monotonic() - started
        written = {node: count - before[node] for node, count in writes().items()}
        await engine.shutdown()
        return history, elapsed, written

    history, elapsed_s, written = uvloop.run(asyncio.wait_for(scenario(), timeout=90))
    first, last = history[0], history[-1]
    assert first.fleet.soc_spread_pct is not None and last.fleet.soc_spread_pct is not None
    assert last.fleet.soc_spread_pct < first.fleet.soc_spread_pct
    for snapshot in history:
        assert len(snapshot.fleet.online_nodes) == 4
        for node in snapshot.fleet.nodes:
            assert node.age_s <= plan.fast_age_s, (node.node_id, node.age_s, plan.describe())
    for node_id in (f"pack-0{unit}" for unit in range(1, 5)):
        setpoints = [next(n.setpoint_w for n in s.dispatch.nodes if n.node_id == node_id) for s in history]
        assert all(value >= 0 for value in setpoints), (node_id, setpoints)  # no sign flips
    # Setpoint writes at most 6 per node per minute (the run is shorter than a minute: at most 6).
    assert elapsed_s < 60
    assert all(count <= 6 for count in written.values()), written
