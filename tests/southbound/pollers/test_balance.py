"""`site.pollers: 2` against the real simulator: the same decisions as one process, setpoints delivered.

The engine runs in the test's uvloop with a `PollerFieldbus`: two real polling processes, each with its
share of the simulated packs (frozen physics, so both runs see the same values).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.balancer import NodeMode
from gateway.config import SiteConfig
from gateway.engine import Engine
from gateway.fleet import Quality
from gateway.sim.fleet import FleetThread
from gateway.site_command import CommandUpdate
from gateway.snapshot import CycleSnapshot
from gateway.southbound.pollers.fieldbus import PollerFieldbus
from tests.conftest import StartFleet
from tests.test_engine import cycles, run_async, site_config, until_online

pytestmark = pytest.mark.wire  # child processes, sockets on loopback

PACKS = 12
REQUEST_W = 6000.0


def balanced(config: SiteConfig, fleet: FleetThread) -> tuple[CycleSnapshot, dict[str, float]]:
    """The last of a few cycles at REQUEST_W, and the setpoint each simulated pack then holds."""
    engine = Engine(config, fieldbus=PollerFieldbus(config) if config.pollers > 1 else None)

    async def scenario() -> CycleSnapshot:
        await engine.start()
        try:
            await until_online(engine, PACKS)
            engine.submit(CommandUpdate(source="test", request_w=REQUEST_W))
            history = await cycles(engine, 8, pause_s=0.05)
        finally:
            held = {e.pack_id: fleet.snapshot(e.pack_id).state.setpoint_w for e in fleet.endpoints}
            await engine.shutdown()
        holding.update(held)
        return history[-1]

    holding: dict[str, float] = {}
    return run_async(scenario), holding


def test_two_pollers_balance_the_site_as_one_process_does(
    tmp_path: Path, start_sim_fleet: StartFleet
) -> None:
    fleet = start_sim_fleet(packs=PACKS, speed=0.0)
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = site_config(tmp_path / "one", fleet.endpoints)
    two = site_config(tmp_path / "two", fleet.endpoints, "site:\n  pollers: 2\n")
    alone, alone_held = balanced(one, fleet)
    split, split_held = balanced(two, fleet)
    assert all(node.quality is Quality.GOOD for node in split.fleet.nodes)
    assert [node.node_id for node in split.fleet.nodes] == [e.pack_id for e in fleet.endpoints]
    assert split.dispatch.served_w == pytest.approx(REQUEST_W, abs=1.0)
    for mine, theirs in zip(split.dispatch.nodes, alone.dispatch.nodes, strict=True):
        assert (mine.node_id, mine.mode) == (theirs.node_id, theirs.mode)
        assert mine.mode is NodeMode.ACTIVE
        assert mine.setpoint_w == pytest.approx(theirs.setpoint_w, abs=1.0)
    # The setpoints reached the packs (within the writer's deadband) from both processes.
    for node in split.dispatch.nodes:
        assert split_held[node.node_id] == pytest.approx(node.setpoint_w, abs=10.0), node.node_id
    assert alone_held == pytest.approx(split_held, abs=10.0)
