"""Every pack a head serves upstream, rebuilt from its worker's Sparkplug messages. Pure: no I/O.

A worker publishes each of its packs as a device: DBIRTH with every metric, DDATA with what moved
(a metric the worker holds stale carries the Quality property 64), DDEATH when the pack goes offline at
the worker. The tracker keeps each pack's latest metrics; `PackView` turns those of the packs listed in
`hierarchy.workers` into what the head's adapters serve: the pack's `NodeState` (its telemetry and
quality) and its worker's decision for it (`NodeDispatch`: setpoint, mode, thermal alarm). So DNP3,
IEC 61850, MQTT and the web view serve a pack behind a worker through the same maps, quality rule and
change tracker as a standalone gateway serves its own, with the site's aggregates (mean SOC, spread,
energy, available power, packs online) counted over the packs themselves.

What a pack's quality upstream says:

    its worker out of the dispatch   failed, with the worker's reason (E_NDEATH, E_SILENT, E_NOT_BORN,
                                     E_DUPLICATE_NODE): COMM_LOST on DNP3, invalid on IEC 61850, DDEATH
    no DBIRTH from its worker yet    failed, E_NOT_REPORTED
    DDEATH from its worker           failed, E_PACK_OFFLINE (the worker's own status says why)
    a metric marked stale            stale, E_STALE_AT_WORKER (the worker still has it, not fresh)
    otherwise                        good
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence

from gateway.balancer import Dispatch, NodeDispatch, NodeMode
from gateway.config import ClusterConfig
from gateway.fleet import FleetState, NodeState, Quality
from gateway.hierarchy.clusters import metric_number
from gateway.hierarchy.tracker import E_DUPLICATE_NODE, ClusterTracker, PackReport, WorkerState
from gateway.logbook import RateLimitedLog, emit_to
from gateway.mapping.sources import MODE_CODES
from gateway.snapshot import CycleSnapshot

__all__ = ["E_NOT_REPORTED", "E_PACK_OFFLINE", "E_STALE_AT_WORKER", "PackView", "pack_node"]

log = logging.getLogger("socgw.hierarchy")

E_NOT_REPORTED = "E_NOT_REPORTED"
E_PACK_OFFLINE = "E_PACK_OFFLINE"
E_STALE_AT_WORKER = "E_STALE_AT_WORKER"
THERMAL_ALARM = "E_THERMAL_EXCURSION"

MODES = {code: mode for mode, code in MODE_CODES.items()}

Served = tuple[NodeState, NodeDispatch]


def pack_node(pack_id: str, report: PackReport) -> Served:
    """One pack's state and decision from what its worker last said of it."""
    metrics = report.metrics
    if metrics.get("online") is False:
        return _failed(pack_id, E_PACK_OFFLINE)
    stale = bool(report.stale)

    def number(name: str) -> float | None:  # a device metric named as the NodeState field it fills
        return metric_number(metrics.get(name))

    state = NodeState(
        pack_id,
        quality=Quality.STALE if stale else Quality.GOOD,
        error_code=E_STALE_AT_WORKER if stale else None,
        soc_pct=number("soc_pct"),
        soh_pct=number("soh_pct"),
        capacity_wh=number("capacity_wh"),
        voltage_v=number("voltage_v"),
        current_a=number("current_a"),
        power_w=number("power_w"),
        temp_c=number("temp_c"),
        temp_max_c=number("temp_max_c"),
        temp_min_c=number("temp_min_c"),
        cell_voltage_min_v=number("cell_voltage_min_v"),
        cell_voltage_max_v=number("cell_voltage_max_v"),
        charge_limit_w=number("charge_limit_w"),
        discharge_limit_w=number("discharge_limit_w"),
        state="fault" if metrics.get("fault") is True else None,
    )
    code = metrics.get("mode")
    decision = NodeDispatch(
        pack_id,
        metric_number(metrics.get("setpoint_w")) or 0.0,
        MODES.get(code, NodeMode.ACTIVE) if isinstance(code, int) else NodeMode.ACTIVE,
        (THERMAL_ALARM,) if metrics.get("thermal_excursion") is True else (),
    )
    return state, decision


def _failed(pack_id: str, reason: str) -> Served:
    return (
        NodeState(pack_id, quality=Quality.FAILED, error_code=reason),
        NodeDispatch(pack_id, 0.0, NodeMode.OFFLINE),
    )


class PackView:
    """The packs of `clusters`, in their configured order, as the head's adapters serve them."""

    def __init__(self, clusters: Sequence[ClusterConfig]) -> None:
        self.owners: Mapping[str, str] = {pack: c.worker_id for c in clusters for pack in c.packs}
        self._cache: dict[str, tuple[PackReport, int, Served]] = {}
        self._lines = RateLimitedLog(emit_to(log))

    @property
    def serving(self) -> bool:
        """Whether any pack is listed: else the head serves its clusters upstream, as before packs."""
        return bool(self.owners)

    def served(self, pack_id: str, tracker: ClusterTracker) -> Served:
        worker = tracker.workers[self.owners[pack_id]]
        if not worker.in_dispatch:
            return _failed(pack_id, E_DUPLICATE_NODE if worker.born else worker.reason)
        report = worker.packs.get(pack_id)
        if report is None:
            return _failed(pack_id, E_PACK_OFFLINE if pack_id in worker.gone else E_NOT_REPORTED)
        cached = self._cache.get(pack_id)
        if cached is not None and cached[0] is report and cached[1] == report.version:
            return cached[2]
        served = pack_node(pack_id, report)
        self._cache[pack_id] = (report, report.version, served)
        return served

    def snapshot(self, snapshot: CycleSnapshot, tracker: ClusterTracker) -> CycleSnapshot:
        """The cycle's snapshot with the packs as its fleet and the workers' decisions for them as its
        dispatch; the site's request, served and unserved power and alarms are the head's."""
        served = [self.served(pack_id, tracker) for pack_id in self.owners]
        dispatch = snapshot.dispatch
        return dataclasses.replace(
            snapshot,
            fleet=FleetState(tuple(state for state, _ in served), snapshot.fleet.timestamp_s),
            dispatch=Dispatch(
                tuple(decision for _, decision in served), dispatch.requested_w, dispatch.served_w,
                dispatch.unserved_w, dispatch.alarms, dispatch.memory,
            ),
        )  # fmt: skip

    def check_claim(self, worker: WorkerState, pack_id: str) -> bool:
        """Whether a pack a worker reports is one the head serves as that worker's (logged once a while
        when not: a pack missing from `hierarchy.workers`, or listed under another worker)."""
        owner = self.owners.get(pack_id)
        if owner == worker.worker_id:
            return True
        if owner is None:
            why = f"is not listed in `hierarchy.workers`: add it to worker {worker.worker_id}'s `packs`"
        else:
            why = f"is listed under worker {owner} in `hierarchy.workers`: correct the head's config"
        self._lines.log(
            f"unlisted {worker.worker_id} {pack_id}",
            logging.WARNING,
            f"worker {worker.worker_id} reports pack `{pack_id}`, which {why}; not served upstream",
        )
        return False
