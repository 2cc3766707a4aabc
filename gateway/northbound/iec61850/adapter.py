"""The IEC 61850 adapter (libiec61850 through pyiec61850-ng): the fleet and each pack as logical devices,
values with quality and time each cycle, buffered and unbuffered reports, setpoint controls, optional
mutual TLS. libiec61850 loads only when the server starts.

Threads: `publish` and `publish_nodes` run on the asyncio loop and only hand the snapshot or the
node states to the updater thread (`updater.py`); libiec61850 serves clients and runs the control
handlers on its own thread (`controls.py`); `start` and `stop` run on the main thread.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from gateway.northbound.adapter import ClientBehind, NodeUpdate, NorthboundError, Submit, as_seen
from gateway.northbound.iec61850.plan import ModelPlan
from gateway.northbound.iec61850.settings import BUFFERED_REPORT_PACKS, SECTION, Settings
from gateway.snapshot import CycleSnapshot

if TYPE_CHECKING:
    from gateway.northbound.iec61850.server import RunningServer

log = logging.getLogger(__name__)


class Iec61850Adapter:
    """Serves the plan's model over MMS; see the module docstring for the threads."""

    name = SECTION

    def __init__(self, settings: Settings, plan: ModelPlan, submit: Submit) -> None:
        self.settings = settings
        self.plan = plan
        self._submit = submit
        self._running: RunningServer | None = None
        self._client_behind: ClientBehind = as_seen

    def door_names(self, client_behind: ClientBehind) -> None:
        """How the front door names the client behind each connection it opens to the server (which
        sees the door's loopback address): for the command logs and each command's source."""
        self._client_behind = client_behind

    def start(self) -> None:
        if self._running is not None:
            raise NorthboundError("the IEC 61850 server is already running")
        from gateway.northbound.iec61850.server import RunningServer  # libiec61850 loads here

        self._running = RunningServer(
            self.settings, self.plan, self._submit, datetime.now(UTC), self._client_behind
        )
        tls = ", mutual TLS" if self.settings.tls is not None else ""
        log.info(
            "IEC 61850 MMS server %s on %s:%d: %d logical devices, map %s%s",
            self.plan.ied_name,
            self.settings.host,
            self.settings.port,
            len(self.plan.devices),
            self.settings.map_path,
            tls,
        )
        packs = sum(1 for device in self.plan.devices if device.node_id is not None)
        if packs > BUFFERED_REPORT_PACKS and any(r.buffered for r in self.plan.iec_map.pack.reports):
            log.warning(
                "IEC 61850: %d packs each have a buffered report in map %s; libiec61850 checks every "
                "changed value against every buffered report's dataset, so each update slows with the "
                "square of the fleet. Above %d packs use `northbound.iec61850.map: large` (docs/iec61850.md)",
                packs,
                self.settings.map_path,
                BUFFERED_REPORT_PACKS,
            )

    def publish(self, snapshot: CycleSnapshot) -> None:
        running = self._running
        if running is not None:
            running.updater.offer(snapshot)

    def publish_nodes(self, update: NodeUpdate) -> None:
        running = self._running
        if running is not None:
            running.updater.offer_nodes(update)

    def stop(self) -> None:
        running, self._running = self._running, None
        if running is not None:
            running.close()
            log.info("IEC 61850 MMS server stopped")
