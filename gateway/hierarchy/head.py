"""The head's fieldbus: the workers' clusters as the nodes the engine polls and writes.

`poll` returns one NodeState per configured worker (clusters.cluster_node: the cluster as one big pack,
failed while the worker is out of the dispatch: never born, NDEATH, its broker lost, or refused for a
duplicate pack id). `write` sends each worker in the dispatch its share as an NCMD of `request_w`, the
same metric a SCADA master writes, so the worker checks it through the one control table and takes it
as any master's request (it reverts after its `command.timeout_s` when the head stops sending). A share
is sent when it moved by 1 W or more, and at least every `REFRESH_S` otherwise: the worker's timeout
never fires while the head lives, and an unchanged share does not cost a command (and two log lines)
every cycle at every worker.

The site parameters in force on the head (reserve, ceiling, balancing on/off: its config's, or what
SCADA set since) reach it as the cycle's snapshot (`publish`, before the cycle's `write`). They are the
head's to set: `write` sends them to a worker in the dispatch by NCMD of the same metrics a master
writes, when they change and after each of its births (a restart, a new broker, a Rebirth the head
asked for), so the worker checks them through the one control table and latches them, and every
cluster's summary (energy above reserve, below ceiling) is counted with the reserve the head dispatches
with. The head's own clusters-as-packs use the parameters in force too.

Upstream (`upstream`), the head's adapters serve every pack its `hierarchy.workers` list, rebuilt from
the workers' DBIRTH/DDATA/DDEATH (packs.py): each cycle's snapshot goes to them with the packs as its
fleet, and each pack's new values as its DDATA arrives, before the next snapshot (as a standalone
gateway's node states as their polls answer). A head that lists no packs serves its clusters.

The MQTT connections run on the host application's thread (host.py); the decoded messages come to this
loop with `call_soon_threadsafe`, and `write` only queues the NCMD: no step of the cycle waits on a broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.balancer import BalancerParams
from gateway.fleet import NodeState
from gateway.hierarchy.host import HostApplication, command_payload
from gateway.hierarchy.packs import PackView
from gateway.hierarchy.settings import HeadSettings
from gateway.hierarchy.tracker import ClusterTracker, Received
from gateway.northbound.mqtt.metrics import REBIRTH, DataType, metric_name
from gateway.snapshot import CycleSnapshot, status_rows
from gateway.southbound.fieldbus import NodeArrived

REFRESH_S = 1.0
RESEND_STEP_W = 1.0
RESERVE, CEILING, BALANCING = (
    metric_name(source) for source in ("fleet.reserve_pct", "fleet.ceiling_pct", "fleet.balancing_enabled")
)


@dataclass(frozen=True)
class SiteParameters:
    """What the head sets on every worker: the parameters in force on the head."""

    reserve_pct: float
    ceiling_pct: float
    balancing_enabled: bool

    def command(self, worker_ceiling_pct: float | None) -> tuple[tuple[str, DataType, float | bool], ...]:
        """The NCMD metrics, in an order the worker accepts one at a time (it checks reserve +
        hysteresis < ceiling at each): a raised ceiling before the reserve, a lowered one after it, so
        each step holds whenever the worker's values (ceiling `worker_ceiling_pct`) and these do."""
        reserve = (RESERVE, DataType.DOUBLE, self.reserve_pct)
        ceiling = (CEILING, DataType.DOUBLE, self.ceiling_pct)
        raised = worker_ceiling_pct is None or self.ceiling_pct >= worker_ceiling_pct
        limits = (ceiling, reserve) if raised else (reserve, ceiling)
        return (*limits, (BALANCING, DataType.BOOLEAN, self.balancing_enabled))


class ClusterFieldbus:
    def __init__(self, settings: HeadSettings, params: BalancerParams) -> None:
        self.settings = settings
        self.params = params  # the head's reserve and ceiling: how a cluster's energies become one pack
        # Silent for keepalive × 1.5 (as an MQTT broker's rule for its clients): cut off, or on a broker
        # the head lost and not reborn on another meanwhile.
        self.tracker = ClusterTracker(settings.workers, settings.mqtt.keepalive_s * 1.5)
        self.host = HostApplication(settings, self._deliver)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sent: dict[str, tuple[float, float]] = {}  # worker -> (share W, when sent)
        self._writes = dict.fromkeys(settings.workers, 0)
        self._in_force: SiteParameters | None = None  # from the last cycle's snapshot
        self._parameters_sent: dict[str, SiteParameters] = {}  # worker -> what it was last sent
        self.packs = PackView(settings.clusters)
        self._pack_arrived: NodeArrived | None = None  # the adapters', once `upstream` gave them
        self.upstream_snapshot: CycleSnapshot | None = None  # the packs, as the adapters last had them

    @property
    def node_ids(self) -> tuple[str, ...]:
        return self.settings.workers

    async def connect(self, now: float) -> Mapping[str, str]:
        self._loop = asyncio.get_running_loop()
        self.host.start()
        return dict.fromkeys(self.settings.workers, "waiting for its NBIRTH")

    async def poll(self, now: float, arrived: NodeArrived | None = None) -> tuple[NodeState, ...]:
        states = self.tracker.states(self.params, time.monotonic())
        if arrived is not None:
            for state in states:
                arrived(state)
        return states

    def publish(self, snapshot: CycleSnapshot) -> None:
        """The parameters in force this cycle (the engine calls every publisher before its write)."""
        self.params = snapshot.params
        self._in_force = SiteParameters(
            snapshot.params.reserve_pct, snapshot.params.ceiling_pct, snapshot.command.balancing_enabled
        )

    async def write(self, setpoints: Mapping[str, Mapping[str, float]], now: float) -> None:
        self._send_parameters()
        for worker_id, values in setpoints.items():
            worker = self.tracker.workers.get(worker_id)
            share = values.get("setpoint_w")
            if worker is None or share is None or not worker.in_dispatch:
                continue
            last = self._sent.get(worker_id)
            if last is not None and abs(share - last[0]) < RESEND_STEP_W and now - last[1] < REFRESH_S:
                continue
            self._sent[worker_id] = (share, now)
            self._writes[worker_id] += 1
            self.host.send(
                worker.broker, worker_id, command_payload((("request_w", DataType.DOUBLE, share),))
            )

    def _send_parameters(self) -> None:
        in_force = self._in_force
        if in_force is None:
            return
        for worker_id, worker in self.tracker.workers.items():
            if not worker.in_dispatch or self._parameters_sent.get(worker_id) == in_force:
                continue
            self._parameters_sent[worker_id] = in_force
            reported = worker.metrics.get(CEILING)
            ceiling = float(reported) if isinstance(reported, int | float) else None
            self.host.send(worker.broker, worker_id, command_payload(in_force.command(ceiling)))

    def writes_total(self) -> Mapping[str, int]:
        return dict(self._writes)

    async def close(self) -> None:
        await asyncio.to_thread(self.host.stop)

    def upstream(self, publish: Callable[[CycleSnapshot], None], arrived: NodeArrived) -> UpstreamPublisher:
        """The engine's publisher for the head's adapters (`publish`, `arrived`: theirs): the packs, or
        the clusters when no pack is listed."""
        if self.packs.serving:
            self._pack_arrived = arrived
        return UpstreamPublisher(self, publish)

    def pack_rows(self) -> list[dict[str, Any]]:
        """Each pack served upstream as `socgw status` shows it, with its worker (none before the
        first cycle, or when no pack is listed)."""
        snapshot = self.upstream_snapshot
        if snapshot is None:
            return []
        return [{**row, "worker": self.packs.owners[row["id"]]} for row in status_rows(snapshot, {})]

    # --- from the host's thread -----------------------------------------------------------------------

    def _deliver(self, message: Received) -> None:
        self._on_loop(self._apply, message)

    def _on_loop(self, handler: Callable[..., object], *args: object) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: stopping
                loop.call_soon_threadsafe(handler, *args)

    def _apply(self, message: Received) -> None:
        rebirth = self.tracker.apply(message, time.monotonic())
        if message.kind == "NBIRTH" or rebirth is not None:
            # a new session: its share and the parameters in force go out at once
            self._sent.pop(message.worker, None)
            self._parameters_sent.pop(message.worker, None)
        if rebirth is not None:
            self.host.send(message.broker, rebirth, command_payload(((REBIRTH, DataType.BOOLEAN, True),)))
        pack = message.device
        if pack is None or self._pack_arrived is None:
            return
        worker = self.tracker.workers.get(message.worker)
        if worker is None or (message.kind == "DBIRTH" and not self.packs.check_claim(worker, pack)):
            return
        if self.packs.owners.get(pack) == message.worker:
            self._pack_arrived(self.packs.served(pack, self.tracker)[0])


class UpstreamPublisher:
    """What the head's adapters are given each cycle: the snapshot with every listed pack as the fleet
    (PackView.snapshot), or the clusters' as it is when no pack is listed."""

    def __init__(self, fieldbus: ClusterFieldbus, publish: Callable[[CycleSnapshot], None]) -> None:
        self._fieldbus = fieldbus
        self._publish = publish

    def publish(self, snapshot: CycleSnapshot) -> None:
        view = self._fieldbus.packs
        if view.serving:
            snapshot = view.snapshot(snapshot, self._fieldbus.tracker)
            self._fieldbus.upstream_snapshot = snapshot
        self._publish(snapshot)
