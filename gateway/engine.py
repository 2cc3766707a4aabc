"""The control cycle: poll → fleet snapshot → dispatch → publish → write, every `cycle_ms`.

Each step is a function of the previous step's output; the snapshot goes to the adapters before the
setpoint writes, and each node's state goes to the publishers that take it (`NodePublisher`) as soon as
its poll answers, so SCADA sees a pack's new values one poll (plus a few milliseconds) after they
changed, however long the slowest pack takes. Timing is paced on deadlines (not
on "sleep a cycle after the work"), so the cycle does not drift; a cycle whose work ends past its
deadline is an overrun (counted), and while the work needs more than the cycle the period stretches to
fit it (`timing.CyclePace`), said once per episode with the measured need (`gateway/logbook.py` bounds
the lines a minute). Commands from the northbound adapters arrive from their own threads through
`submit`, are checked and applied at once (so the master hears a refusal) and take effect the next
cycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from gateway.balancer import BalancerMemory, NodeMode, SiteCommand, dispatch
from gateway.balancing_log import BalancingLog
from gateway.config import SiteConfig
from gateway.fleet import FleetState, NodeState, highest_discharge_limits, learned_rated_power_w
from gateway.logbook import RateLimitedLog, emit_to, sweep
from gateway.sdnotify import Notifier
from gateway.site_command import CommandUpdate, SiteCommandState
from gateway.snapshot import CycleAccounts, CycleSnapshot, status_rows
from gateway.southbound.fieldbus import Fieldbus, LocalFieldbus, NodeArrived
from gateway.timing import CyclePace, CycleStats, Pace, settle_collector

log = logging.getLogger(__name__)

# Nodes whose setpoint the engine writes. Offline nodes cannot take it, and a node in maintenance
# belongs to the technician working on it.
WRITTEN_MODES = frozenset(
    {NodeMode.ACTIVE, NodeMode.AT_RESERVE, NodeMode.BYPASSED_THERMAL, NodeMode.CALIBRATING}
)


class Publisher(Protocol):
    """A northbound adapter: called on the loop once per cycle; must return quickly (hand work off)."""

    def publish(self, snapshot: CycleSnapshot) -> None: ...


@runtime_checkable
class NodePublisher(Publisher, Protocol):
    """A publisher that also takes each node's state as its poll answers, before the cycle's snapshot
    (called on the loop, mid-poll: must return at once)."""

    def node_arrived(self, state: NodeState) -> None: ...


class Engine:
    def __init__(
        self,
        config: SiteConfig,
        *,
        fieldbus: Fieldbus | None = None,
        publishers: Sequence[Publisher] = (),
        clock: Callable[[], float] = time.monotonic,
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self.fieldbus = fieldbus if fieldbus is not None else LocalFieldbus.from_config(config)
        self.publishers = list(publishers)
        self.clock = clock
        self.notifier = notifier or Notifier()
        self.cycle_s = config.cycle_ms / 1000.0
        default = SiteCommand(
            request_w=config.command.default_request_w,
            charge_source=config.command.charge_source,
            maintenance=frozenset(node.node_id for node in config.nodes if node.maintenance),
        )
        self.commands = SiteCommandState(default, config.command.timeout_s, config.balancer)
        # Held while a command is checked and applied (from a protocol stack's thread) and while the
        # cycle reads the command in force: microseconds, so a stack's thread never waits for long.
        self._commands_lock = threading.Lock()
        self._highest_discharge_w: dict[str, float] = {}
        self.stats = CycleStats()
        self.memory: BalancerMemory | None = None
        self.last: CycleSnapshot | None = None
        self.last_steps_ms: dict[str, float] = {}
        self.balancing_log = (
            BalancingLog(
                config.logging.balancing_log,
                config.logging.balancing_log_max_bytes,
                config.logging.balancing_log_backups,
            )
            if config.logging.balancing_log is not None
            else None
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._index = 0
        self.pace = CyclePace(self.cycle_s)
        self._pace_log = RateLimitedLog(emit_to(log))  # stretched and back: a few lines a minute at most
        self._last_watchdog_s = -math.inf
        self._was_commanded = False

    # ---------------------------------------------------------------------------------------------
    # commands

    def submit(self, update: CommandUpdate, *, apply: bool = True) -> str | None:
        """Check and apply a command (thread-safe: the protocol stacks call it from their own threads);
        it takes effect the next cycle. Returns why it was refused (a reserve or ceiling that does not fit
        the values in force), None when accepted. Check and change are one step, so two masters setting
        the reserve and the ceiling at once cannot both pass a check against the old values. With
        `apply=False` only the check runs (a DNP3 SELECT, an IEC 61850 check before the reply)."""
        with self._commands_lock:
            if not apply:
                return self.commands.check(update)
            try:
                self.commands.apply(update, self.clock())
            except ValueError as error:
                refusal: str | None = str(error)
            else:
                refusal = None
        if refusal is None:
            self._log(logging.INFO, "command from %s accepted: %s", update.source, _describe_update(update))
        else:
            self._log(logging.WARNING, "command from %s refused: %s", update.source, refusal)
        return refusal

    def _log(self, level: int, message: str, *args: object) -> None:
        """Log on the loop's thread: never write to the log from a protocol stack's thread."""
        loop = self._loop
        if loop is None or loop.is_closed() or threading.current_thread() is threading.main_thread():
            log.log(level, message, *args)
            return
        try:
            loop.call_soon_threadsafe(log.log, level, message, *args)
        except RuntimeError:  # the loop closed meanwhile: the gateway is stopping
            return

    # ---------------------------------------------------------------------------------------------
    # the cycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        failures = await self.fieldbus.connect(self.clock())
        for node_id, error in failures.items():
            log.warning("node %s not ready at start (it keeps retrying): %s", node_id, error)
        settle_collector()

    async def run_cycle(self) -> CycleSnapshot:
        steps: dict[str, float] = {}
        started = self.clock()
        nodes = await self.fieldbus.poll(started, self._node_listener())
        polled = self.clock()
        steps["poll"] = (polled - started) * 1000.0
        fleet = FleetState(nodes=nodes, timestamp_s=polled)
        with self._commands_lock:
            command = self.commands.current(polled)
            params = self.commands.params
            charge_discharge_enabled = self.commands.charge_discharge_enabled
            self._log_command_timeout(polled)
        self._highest_discharge_w = highest_discharge_limits(self._highest_discharge_w, fleet)
        decision = dispatch(fleet, command, params, self.memory, polled)
        self.memory = decision.memory
        dispatched = self.clock()
        steps["dispatch"] = (dispatched - polled) * 1000.0
        self._index += 1
        snapshot = CycleSnapshot(
            index=self._index,
            wall_time=datetime.now(UTC),
            fleet=fleet,
            command=command,
            dispatch=decision,
            params=params,
            learned_rated_power_w=learned_rated_power_w(self._highest_discharge_w),
            charge_discharge_enabled=charge_discharge_enabled,
            accounts=CycleAccounts(
                overruns=self.stats.overruns,
                # this cycle's poll and dispatch; the write and publish of the one before
                steps_ms={
                    **steps,
                    "write": self.last_steps_ms.get("write", 0.0),
                    "publish": self.last_steps_ms.get("publish", 0.0),
                },
                writes=self.fieldbus.writes_total(),
            ),
        )
        # Published before the writes: SCADA sees the values one poll after they changed, not one poll
        # plus every node's setpoint write later.
        for publisher in self.publishers:
            try:
                publisher.publish(snapshot)
            except Exception:  # a broken publisher must not stop the control loop
                log.exception("publisher %s failed", type(publisher).__name__)
        published = self.clock()
        steps["publish"] = (published - dispatched) * 1000.0
        setpoints = {
            node.node_id: {"setpoint_w": node.setpoint_w}
            for node in decision.nodes
            if node.mode in WRITTEN_MODES
        }
        await self.fieldbus.write(setpoints, published)
        written = self.clock()
        steps["write"] = (written - published) * 1000.0
        steps["total"] = (written - started) * 1000.0
        self.last = snapshot
        self.last_steps_ms = steps
        self._record_decision(snapshot)
        return snapshot

    def _node_listener(self) -> NodeArrived | None:
        """What the poll calls with each node's state as it answers; None when no publisher takes them."""
        listeners = [p for p in self.publishers if isinstance(p, NodePublisher)]
        if not listeners:
            return None

        failed: set[int] = set()  # said once a cycle per publisher, not once per node

        def arrived(state: NodeState) -> None:
            for listener in listeners:
                try:
                    listener.node_arrived(state)
                except Exception:  # a broken publisher must not stop the poll
                    if id(listener) not in failed:
                        failed.add(id(listener))
                        log.exception("publisher %s failed (node %s)", type(listener).__name__, state.node_id)

        return arrived

    async def run(self, stop: asyncio.Event) -> None:
        """Cycle until `stop` is set, paced on deadlines; while the work needs more than the cycle, at a
        stretched period (said once, with the measured need) rather than late on every deadline."""
        await self.start()
        self.notifier.ready(
            f"balancing {len(self.fieldbus.node_ids)} nodes every {self.config.cycle_ms:g} ms"
        )
        deadline = self.clock()
        while not stop.is_set():
            await self.run_cycle()
            finished = self.clock()
            # The need counts from when the cycle was due: a loop busy elsewhere (a publisher's work, the
            # status socket) starts it late, and that time is the cycle's too.
            overrun = finished > deadline + self.cycle_s
            self.stats.record(self.last_steps_ms, overrun)
            self._note_pace(self.pace.note(finished - deadline))
            sweep()  # the summaries of rate-limited log lines whose window is over
            deadline += self.pace.period_s
            deadline = max(deadline, finished)  # skip the missed slots instead of bursting to catch up
            self._watchdog(finished)
            delay = max(0.0, deadline - self.clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)

    async def shutdown(self) -> None:
        """Write the safe setpoint to every reachable node and close every connection."""
        self.notifier.stopping()
        maintenance = self.commands.current(self.clock()).maintenance
        safe = {
            node_id: {"setpoint_w": self.config.command.safe_setpoint_w}
            for node_id in self.fieldbus.node_ids
            if node_id not in maintenance
        }
        try:
            await asyncio.wait_for(self.fieldbus.write(safe, self.clock()), timeout=2.0)
        except TimeoutError:
            log.warning("not every node confirmed the safe setpoint within 2 s")
        await self.fieldbus.close()
        if self.balancing_log is not None:
            self.balancing_log.close()
        self._loop = None

    # ---------------------------------------------------------------------------------------------
    # status, logs

    def status(self) -> dict[str, Any]:
        snapshot = self.last
        document: dict[str, Any] = {
            "site": self.config.name,
            "cycle_ms": self.config.cycle_ms,
            "timing": self.stats.summary(),
        }
        if snapshot is None:
            return document
        fleet = snapshot.fleet
        document.update(
            {
                "cycle": snapshot.index,
                "time": snapshot.wall_time.isoformat(),
                "request_w": snapshot.command.request_w,
                "commanded": self.commands.commanded(self.clock()),
                "balancing_enabled": snapshot.command.balancing_enabled,
                "reserve_pct": snapshot.params.reserve_pct,
                "ceiling_pct": snapshot.params.ceiling_pct,
                "served_w": snapshot.dispatch.served_w,
                "unserved_w": snapshot.dispatch.unserved_w,
                "alarms": list(snapshot.dispatch.alarms),
                "fleet": {
                    "mean_soc_pct": fleet.mean_soc_pct,
                    "soc_spread_pct": fleet.soc_spread_pct,
                    "stored_energy_wh": fleet.stored_energy_wh,
                    "power_w": fleet.total_power_w,
                    "available_discharge_w": fleet.available_discharge_w,
                    "available_charge_w": fleet.available_charge_w,
                },
                "nodes": status_rows(snapshot, self.fieldbus.writes_total()),
            }
        )
        return document

    def _record_decision(self, snapshot: CycleSnapshot) -> None:
        if self.balancing_log is None:
            return
        decision = {
            "request_w": round(snapshot.command.request_w, 1),
            "unserved_w": round(snapshot.dispatch.unserved_w, 1),
            "alarms": list(snapshot.dispatch.alarms),
            "nodes": {
                node.node_id: {"setpoint_w": round(node.setpoint_w, 1), "mode": str(node.mode)}
                for node in snapshot.dispatch.nodes
            },
        }
        context = {
            "mean_soc_pct": snapshot.fleet.mean_soc_pct,
            "soc_spread_pct": snapshot.fleet.soc_spread_pct,
        }
        self.balancing_log.record(snapshot.wall_time.isoformat(timespec="milliseconds"), decision, context)

    def _note_pace(self, change: Pace | None) -> None:
        if change is Pace.STRETCHED:
            self._pace_log.log(
                "cycle pace",
                logging.WARNING,
                f"cycle stretched to {self.pace.period_s * 1000.0:.0f} ms: the work needs "
                f"{self.pace.need_s * 1000.0:.1f} ms (median of the last cycles), more than the "
                f"{self.config.cycle_ms:.0f} ms cycle (see `socgw status` for the slow step); answers "
                f"that arrive are still taken, setpoint writes keep their pace",
            )
        elif change is Pace.RESTORED:
            self._pace_log.log(
                "cycle pace",
                logging.INFO,
                f"cycle back to {self.config.cycle_ms:.0f} ms: the work fits again",
            )

    def _log_command_timeout(self, now_s: float) -> None:
        commanded = self.commands.commanded(now_s)
        if self._was_commanded and not commanded:
            log.warning(
                "site request from %s not refreshed within %.0f s: back to the default %.0f W",
                self.commands.last_source,
                self.commands.timeout_s,
                self.commands.default.request_w,
            )
        self._was_commanded = commanded

    def _watchdog(self, now_s: float) -> None:
        interval = self.notifier.watchdog_interval_s
        if interval is not None and now_s - self._last_watchdog_s >= interval:
            self.notifier.watchdog()
            self._last_watchdog_s = now_s


def _describe_update(update: CommandUpdate) -> str:
    fields = {
        name: value
        for name, value in dataclasses.asdict(update).items()
        if name != "source" and value is not None
    }
    return ", ".join(f"{name}={value}" for name, value in fields.items()) or "nothing"
