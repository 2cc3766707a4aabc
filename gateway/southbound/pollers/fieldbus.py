"""`PollerFieldbus`: the site's nodes polled by `site.pollers` processes, one fieldbus for the engine.

Each cycle `poll` sends `poll` to every running poller and hands each node's state to `arrived` as its
packet comes; it returns when every poller said `done`, or when the poll's budget is spent: it never
waits longer for a poller. The budget is most of the cycle (the dispatch and the writes still fit), or,
while the pollers' polls need more (the longest of each one's last 20 polls, late ones included),
that need: an overloaded site then stretches its cycle (the engine says so) instead of calling every answer
late. A hung poller finishes no poll, so it cannot stretch the budget. A node whose
state has not come by then, because its poller is late, hung, dead or restarting, keeps its last values
as stale for `STALE_LIMIT_S`, then fails, with E_POLLER_DOWN; a state that comes late still counts
as the node's latest values. The one balancer then decides for the whole site, and `write` sends each
poller its nodes' setpoints. A poller silent for `HUNG_AFTER_S` is killed (and restarted like one
that died); late and back are each logged once per episode.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import math
import time
from collections.abc import Mapping
from typing import Any, Final

from gateway.config import SiteConfig
from gateway.fleet import NodeState, Quality
from gateway.southbound.errors import ErrorCode, describe_fault
from gateway.southbound.fieldbus import NodeArrived
from gateway.southbound.pollers.process import PollerProcess
from gateway.southbound.pollers.shares import split_nodes
from gateway.southbound.pollers.wire import DONE_KIND, STATES_KIND, WireError, decode_done, decode_states
from gateway.supervision import kill

log = logging.getLogger(__name__)

POLL_BUDGET: Final = 0.5  # of the cycle: a healthy poller answers in 5-15 ms; a slower one lifts it (need)
STALE_LIMIT_S: Final = 2.0  # as a session's: last values are carried this long, then the node fails
NEED_SAMPLES: Final = 20  # a poller's need: the longest of its last polls (2 s at 100 ms)
NEED_MARGIN_S: Final = 0.01  # the budget above that need
MAX_BUDGET_CYCLES: Final = 5.0  # the most a poll waits, in cycles, whatever the need
HUNG_AFTER_S: Final = 3.0  # a running poller that answered nothing this long is killed and restarted
START_TIMEOUT_S: Final = 60.0  # how long `connect` waits for the pollers' first report
RECENT_CYCLES: Final = 16  # a state this many cycles late is dropped (its `now` is forgotten)
DOWN: Final = str(ErrorCode.POLLER_DOWN)


class PollerFieldbus:
    """The nodes of `config`, split over `config.pollers` polling processes (`shares.split_nodes`)."""

    def __init__(self, config: SiteConfig) -> None:
        self._node_ids = tuple(node.node_id for node in config.nodes)
        self._cycle_s = config.cycle_ms / 1000.0
        self._budget_s = self._cycle_s * POLL_BUDGET
        self._poll_budget_s = self._budget_s  # this cycle's (`_budget`)
        position = {node_id: index for index, node_id in enumerate(self._node_ids)}
        self.pollers: list[PollerProcess] = []
        self._positions: dict[int, tuple[int, ...]] = {}  # poller number -> its nodes' places
        for number, share in enumerate(split_nodes(config.nodes, config.pollers), start=1):
            ids = tuple(node.node_id for node in share)
            self.pollers.append(PollerProcess(number, ids, config.path, self._packet))
            self._positions[number] = tuple(position[node_id] for node_id in ids)
        self._latest = [NodeState(node_id, Quality.FAILED, DOWN, math.inf) for node_id in self._node_ids]
        self._values_at: list[float | None] = [None] * len(self._node_ids)  # when each latest was read
        self._fresh = [False] * len(self._node_ids)
        self._writes = dict.fromkeys(self._node_ids, 0)
        self._cycle = 0
        self._cycle_now: dict[int, float] = {}
        self._waiting: set[int] = set()
        self._all_done: asyncio.Future[None] | None = None
        self._arrived: NodeArrived | None = None
        self._answered_at: dict[int, float] = {}
        self._late_since: dict[int, float] = {}
        self._durations = {
            poller.number: collections.deque[float](maxlen=NEED_SAMPLES) for poller in self.pollers
        }

    @property
    def node_ids(self) -> tuple[str, ...]:
        return self._node_ids

    async def connect(self, now: float) -> Mapping[str, str]:
        for poller in self.pollers:
            poller.start()
            self._answered_at[poller.number] = time.monotonic()
        failures: dict[str, str] = {}
        for poller in self.pollers:
            assert poller.connected is not None
            try:
                failures.update(await asyncio.wait_for(asyncio.shield(poller.connected), START_TIMEOUT_S))
            except TimeoutError:
                failures.update(
                    dict.fromkeys(
                        poller.node_ids, f"{poller.name} did not connect within {START_TIMEOUT_S:g} s"
                    )
                )
        return failures

    async def poll(self, now: float, arrived: NodeArrived | None = None) -> tuple[NodeState, ...]:
        self._cycle += 1
        cycle = self._cycle
        self._cycle_now[cycle] = now
        self._cycle_now.pop(cycle - RECENT_CYCLES, None)
        self._fresh = [False] * len(self._node_ids)
        self._arrived = arrived
        running = [poller for poller in self.pollers if poller.running]
        self._waiting = {poller.number for poller in running}  # one whose channel is full is late too
        asked = [poller.send({"kind": "poll", "cycle": cycle, "now": now}) for poller in running]
        if any(asked):
            loop = asyncio.get_running_loop()
            self._all_done = done = loop.create_future()
            self._poll_budget_s = self._budget()
            timer = loop.call_later(self._poll_budget_s, _settle, done)
            try:
                await done
            finally:
                timer.cancel()
                self._all_done = None
        self._arrived = None
        for poller in self.pollers:
            self._account(poller, now)
        latest, fresh = self._latest, self._fresh
        return tuple(latest[i] if fresh[i] else self._carried(i, now) for i in range(len(latest)))

    async def write(self, setpoints: Mapping[str, Mapping[str, float]], now: float) -> None:
        for poller in self.pollers:
            if poller.running:
                share = {node_id: setpoints[node_id] for node_id in poller.node_ids if node_id in setpoints}
                poller.send({"kind": "write", "now": now, "setpoints": share})

    def writes_total(self) -> Mapping[str, int]:
        return dict(self._writes)

    async def close(self) -> None:
        await asyncio.gather(*(poller.stop() for poller in self.pollers))

    def status(self) -> list[dict[str, Any]]:
        return [poller.status() for poller in self.pollers]

    # --- what the pollers send (on the loop) ----------------------------------------------------------

    def _packet(self, poller: PollerProcess, packet: bytes) -> None:
        kind = packet[:1]
        positions = self._positions[poller.number]
        if kind == STATES_KIND:
            cycle, states = decode_states(packet, poller.node_ids)
            cycle_now = self._cycle_now.get(cycle)
            if cycle_now is None:
                return  # too late to say how old its values are
            current = cycle == self._cycle
            for index, state in states:
                place = positions[index]
                self._latest[place] = state
                self._values_at[place] = None if state.quality is Quality.FAILED else cycle_now - state.age_s
                if current:
                    self._fresh[place] = True
                    if self._arrived is not None:
                        self._arrived(state)
        elif kind == DONE_KIND:
            cycle, writes = decode_done(packet, len(positions))
            if cycle in self._cycle_now:
                self._durations[poller.number].append(time.monotonic() - self._cycle_now[cycle])
            for node_id, count in zip(poller.node_ids, writes, strict=True):
                self._writes[node_id] = count
            self._answered_at[poller.number] = time.monotonic()
            if cycle == self._cycle and poller.number in self._waiting:
                self._waiting.discard(poller.number)
                if not self._waiting and self._all_done is not None:
                    _settle(self._all_done)
        else:
            raise WireError(f"unknown packet kind {kind!r}")

    def _budget(self) -> float:
        """How long this poll may wait: most of the cycle, or what the running pollers need lately."""
        needs = [
            max(self._durations[poller.number])
            for poller in self.pollers
            if poller.running and self._durations[poller.number]
        ]
        need = max(needs, default=0.0) + NEED_MARGIN_S
        return min(max(self._budget_s, need), self._cycle_s * MAX_BUDGET_CYCLES)

    def _account(self, poller: PollerProcess, now: float) -> None:
        """Count a late poll, say once when a poller turns late or answers again, kill a hung one."""
        number = poller.number
        if not poller.running:
            self._late_since.pop(number, None)
            self._answered_at[number] = time.monotonic()
            return
        if number not in self._waiting:
            since = self._late_since.pop(number, None)
            if since is not None:
                log.warning("%s (pid %s) answering again after %.1f s", poller.name, poller.pid, now - since)
            return
        poller.missed += 1
        if number not in self._late_since:
            self._late_since[number] = now
            detail = (
                f"did not finish its poll within {self._poll_budget_s * 1000.0:.0f} ms (pid {poller.pid}, "
                f"{len(poller.node_ids)} nodes: {poller.node_ids[0]}..{poller.node_ids[-1]})"
            )
            log.warning("%s", describe_fault(ErrorCode.POLLER_DOWN, detail, poller.name))
        silent_s = time.monotonic() - self._answered_at[number]
        if silent_s >= HUNG_AFTER_S:
            log.error(
                "%s (pid %s) answered nothing for %.1f s: killing it", poller.name, poller.pid, silent_s
            )
            kill(poller)
            self._answered_at[number] = time.monotonic()

    def _carried(self, place: int, now: float) -> NodeState:
        """A node whose state did not come this cycle: its last values, stale, then failed."""
        last, read_at = self._latest[place], self._values_at[place]
        if read_at is not None and now - read_at <= STALE_LIMIT_S:
            return dataclasses.replace(last, quality=Quality.STALE, error_code=DOWN, age_s=now - read_at)
        age = math.inf if read_at is None else now - read_at
        return NodeState(last.node_id, Quality.FAILED, DOWN, age)


def _settle(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)
