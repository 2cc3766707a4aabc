"""Graceful overload: work that needs 1.5 cycles of the loop's time, every cycle.

Each cycle's poll hands the loop 150 ms of CPU work, done in an I/O callback (where a loop serving hundreds
of packs spends its time: decoding what the sockets brought) just after the poll's requests went out, while
the engine balances four packs served by a real simulator in its own process. The loop runs its expired
timers before it reads the sockets again, so the requests' timers fire when their answers have been waiting
in the socket buffer for most of the work: that is not a timeout. The cycle stretches (said once, with the
need) and no pack that answers is timed out, dropped or reconnected; the setpoint writes keep their pace.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import time
from pathlib import Path

import pytest

from gateway.engine import Engine
from gateway.fleet import NodeState, Quality
from gateway.snapshot import CycleSnapshot
from gateway.southbound.fieldbus import LocalFieldbus, NodeArrived
from tests.conftest import StartProcess
from tests.test_engine import run_async, site_config

pytestmark = pytest.mark.wire  # a simulator process, sockets on loopback

BURN_S = 0.15  # 1.5 cycles of 100 ms
LOADED_S = 8.0
WRITES_PER_NODE_PER_MINUTE = 6  # the steady-state budget


class Burner:
    """Has the loop do `BURN_S` of CPU work in an I/O callback, woken in the same turn of the loop as the
    poll's requests are sent: the work starts before the answers can come back. Records each snapshot."""

    def __init__(self) -> None:
        self.snapshots: list[CycleSnapshot] = []
        self.burning = False
        self._wake, self._woken = socket.socketpair()
        self._woken.setblocking(False)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_reader(self._woken.fileno(), self._burn)

    def stop(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.remove_reader(self._woken.fileno())
        self._wake.close()
        self._woken.close()

    def publish(self, snapshot: CycleSnapshot) -> None:
        self.snapshots.append(snapshot)

    def wake(self) -> None:
        if self.burning:
            self._wake.send(b"!")  # now: the poll sends its requests in this same turn (poll_all)

    def _burn(self) -> None:
        self._woken.recv(64)
        until = time.monotonic() + BURN_S
        while time.monotonic() < until:
            pass


class BurningFieldbus(LocalFieldbus):
    """The packs' sessions, with the burn woken at each poll."""

    burner = Burner()

    async def poll(self, now: float, arrived: NodeArrived | None = None) -> tuple[NodeState, ...]:
        self.burner.wake()
        return await super().poll(now, arrived)


def test_an_overloaded_loop_stretches_its_cycle_and_times_out_no_answer_that_arrived(
    tmp_path: Path, start_sim_process: StartProcess, caplog: pytest.LogCaptureFixture
) -> None:
    sim = start_sim_process("--packs", "4", "--base-port", "0")
    config = site_config(tmp_path, sim.endpoints, "command:\n  default_request_w: 1500\n")
    bus = BurningFieldbus.from_config(config)
    recorder = bus.burner = Burner()
    engine = Engine(config, fieldbus=bus)
    engine.publishers.append(recorder)
    caplog.set_level(logging.INFO, logger="gateway.engine")

    async def scenario() -> tuple[int, int]:
        stop = asyncio.Event()
        recorder.start(asyncio.get_running_loop())
        running = asyncio.create_task(engine.run(stop))
        for _ in range(200):
            last = engine.last
            if last is not None and all(n.quality is Quality.GOOD for n in last.fleet.nodes):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"the packs did not come online: {engine.status()}")
        await asyncio.sleep(1.0)  # the first setpoints written
        first = len(recorder.snapshots)
        connects = [session.connects for session in bus.sessions]
        writes = [session.writes.writes_total for session in bus.sessions]
        recorder.burning = True
        await asyncio.sleep(LOADED_S)
        stop.set()
        await running
        recorder.stop(asyncio.get_running_loop())
        await engine.shutdown()
        assert [session.connects for session in bus.sessions] == connects  # no reconnect of any pack
        most_writes = max(s.writes.writes_total - w for s, w in zip(bus.sessions, writes, strict=True))
        return first, most_writes

    first, most_writes = run_async(scenario)
    loaded = recorder.snapshots[first:]
    assert engine.pace.stretched, engine.pace
    assert LOADED_S / 0.5 < len(loaded) < LOADED_S / (BURN_S + 0.01)  # cycling, at a stretched period
    stale = [
        (s.index, n.node_id, n.error_code)
        for s in loaded
        for n in s.fleet.nodes
        if n.quality is not Quality.GOOD
    ]
    assert stale == []  # not one reading timed out
    assert [session.link.late_answers for session in bus.sessions] == [0, 0, 0, 0]
    assert sum(session.link.answers_waiting for session in bus.sessions) > 0  # the case did occur
    assert most_writes <= math.ceil(WRITES_PER_NODE_PER_MINUTE * LOADED_S / 60.0)
    stretched = [r.getMessage() for r in caplog.records if "cycle stretched" in r.getMessage()]
    assert len(stretched) == 1, stretched
    assert "the work needs" in stretched[0]
