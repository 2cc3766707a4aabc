"""`/metrics`: the latest cycle in the Prometheus exposition format, through `prometheus_client`.

The values are read at scrape time from the newest snapshot through the named quantities
(`gateway.mapping.sources`), so a scrape costs the control loop nothing and shows what SCADA sees.
Units follow Prometheus conventions: watts, degrees Celsius, ratios (0..1) for percentages, seconds.
docs/web.md lists every family; docs/grafana-dashboard.json is built on them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.balancer import NodeMode
from gateway.fleet import Quality
from gateway.mapping.sources import read_fleet, read_node
from gateway.northbound.adapter import CORE_PID_VARIABLE
from gateway.northbound.web.history import History
from gateway.snapshot import CycleSnapshot

NODE_LABELS = ("node", "profile")
# (family, help, named quantity, factor to the base unit)
NODE_GAUGES = (
    ("socgw_node_soc_ratio", "State of charge (0..1)", "node.soc_pct", 0.01),
    ("socgw_node_power_watts", "Pack power, + = discharge", "node.power_w", 1.0),
    (
        "socgw_node_setpoint_watts",
        "Setpoint the balancer gives the pack, + = discharge",
        "node.setpoint_w",
        1.0,
    ),
    ("socgw_node_temperature_celsius", "Pack temperature", "node.temp_c", 1.0),
)
FLEET_GAUGES = (
    ("socgw_site_request_watts", "Site power request, + = discharge", "fleet.request_w", 1.0),
    (
        "socgw_site_served_watts",
        "Part of the request the fleet is dispatched to serve",
        "fleet.served_w",
        1.0,
    ),
    ("socgw_site_unserved_watts", "Part of the request no pack can take", "fleet.unserved_w", 1.0),
    ("socgw_fleet_power_watts", "Measured fleet power, + = discharge", "fleet.power_w", 1.0),
    ("socgw_fleet_soc_ratio", "Mean state of charge of the online packs (0..1)", "fleet.mean_soc_pct", 0.01),
    (
        "socgw_fleet_soc_spread_ratio",
        "Highest minus lowest SOC of the online packs (0..1)",
        "fleet.soc_spread_pct",
        0.01,
    ),
    ("socgw_fleet_nodes_online", "Packs with usable telemetry", "fleet.nodes_online", 1.0),
)
# Cycle interval buckets around the usual 100 ms cycle.
INTERVAL_BUCKETS_S = (0.05, 0.09, 0.1, 0.11, 0.125, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0)

Latest = Callable[[], tuple[CycleSnapshot | None, History]]


def in_base_unit(value: float, factor: float) -> float:
    """The quantity in the family's base unit, without float noise (0.796, not 0.7959999999999999)."""
    return round(float(value) * factor, 9) + 0.0


class FleetCollector(Collector):
    """The gauges and counters of the newest cycle, computed when Prometheus scrapes."""

    def __init__(self, latest: Latest, profiles: Mapping[str, str]) -> None:
        self._latest = latest
        self._profiles = profiles

    def collect(self) -> Iterator[Metric]:
        snapshot, history = self._latest()
        faults = CounterMetricFamily(
            "socgw_node_faults", "Times a fault or alarm code was raised on a pack", labels=("node", "code")
        )
        for (node_id, code), count in sorted(history.fault_counts.items()):
            faults.add_metric([node_id, code], count)
        yield faults
        late = CounterMetricFamily(
            "socgw_cycle_late", "Cycles that started more than half a cycle late (an overrun before them)"
        )
        late.add_metric([], history.late_cycles)
        yield late
        if snapshot is None:
            return
        cycles = CounterMetricFamily("socgw_cycles", "Control cycles run since the gateway started")
        cycles.add_metric([], snapshot.index)
        yield cycles
        overruns = CounterMetricFamily(
            "socgw_cycle_overruns", "Control cycles whose work ended past their deadline"
        )
        overruns.add_metric([], snapshot.accounts.overruns)
        yield overruns
        steps = GaugeMetricFamily(
            "socgw_cycle_step_seconds", "Duration of each step of the latest cycle", labels=("step",)
        )
        for step, duration_ms in sorted(snapshot.accounts.steps_ms.items()):
            steps.add_metric([step], in_base_unit(duration_ms, 0.001))
        yield steps
        for name, documentation, quantity, factor in FLEET_GAUGES:
            gauge = GaugeMetricFamily(name, documentation)
            value = read_fleet(quantity, snapshot)
            if isinstance(value, int | float):
                gauge.add_metric([], in_base_unit(value, factor))
            yield gauge
        yield from self._node_gauges(snapshot)

    def _node_gauges(self, snapshot: CycleSnapshot) -> Iterator[Metric]:
        nodes = snapshot.fleet.nodes
        for name, documentation, quantity, factor in NODE_GAUGES:
            gauge = GaugeMetricFamily(name, documentation, labels=NODE_LABELS)
            for node in nodes:
                value = read_node(quantity, snapshot, node)
                if isinstance(value, int | float):  # unknown (offline): no sample, not a stale number
                    gauge.add_metric(
                        [node.node_id, self._profiles.get(node.node_id, "")], float(value) * factor
                    )
            yield gauge
        modes = GaugeMetricFamily(
            "socgw_node_mode",
            "Balancer mode of the pack: 1 for its current mode",
            labels=(*NODE_LABELS, "mode"),
        )
        quality = GaugeMetricFamily(
            "socgw_node_quality",
            "Telemetry quality of the pack: 1 for its current quality (good, stale, failed)",
            labels=(*NODE_LABELS, "quality"),
        )
        for node in nodes:
            labels = [node.node_id, self._profiles.get(node.node_id, "")]
            decision = snapshot.node_dispatch(node.node_id)
            for mode in NodeMode:
                current = decision is not None and decision.mode is mode
                modes.add_metric([*labels, str(mode)], 1.0 if current else 0.0)
            for level in Quality:
                quality.add_metric([*labels, str(level)], 1.0 if node.quality is level else 0.0)
        yield modes
        yield quality
        writes = CounterMetricFamily(
            "socgw_node_writes", "Setpoint writes sent to the pack (flash wear)", labels=NODE_LABELS
        )
        for node in nodes:
            count = snapshot.accounts.writes.get(node.node_id)
            if count is not None:
                writes.add_metric([node.node_id, self._profiles.get(node.node_id, "")], count)
        yield writes


class DoorCollector(Collector):
    """Connections by front-door outcome (accepted, refused-not-allowed, ...): the view's own, and each
    other adapter process's as the newest snapshot carries them."""

    def __init__(self, own: Callable[[], Mapping[str, int]], latest: Latest) -> None:
        self._own = own
        self._latest = latest

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "socgw_frontdoor_connections",
            "Connections by outcome at the front door (who may connect, TLS, first frame)",
            labels=("section", "outcome"),
        )
        snapshot, _ = self._latest()
        doors = dict(snapshot.accounts.front_door) if snapshot is not None else {}
        doors["web"] = self._own()
        for section, counts in sorted(doors.items()):
            for outcome, count in sorted(counts.items()):
                family.add_metric([section, outcome], count)
        yield family


class Metrics:
    """The registry `/metrics` serves: the fleet, the cycle interval histogram, the process and the
    front doors (the view's own and the other adapters')."""

    def __init__(
        self, latest: Latest, profiles: Mapping[str, str], door: Callable[[], Mapping[str, int]] = dict
    ) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(FleetCollector(latest, profiles))
        self.registry.register(DoorCollector(door, latest))
        self.cycle_work = Histogram(
            "socgw_cycle_work_seconds",
            "Time a control cycle's work took (poll, dispatch, write), against its cycle",
            buckets=INTERVAL_BUCKETS_S,
            registry=self.registry,
        )
        self.cycle_interval = Histogram(
            "socgw_cycle_interval_seconds",
            "Time from the start of one control cycle to the start of the next",
            buckets=INTERVAL_BUCKETS_S,
            registry=self.registry,
        )
        # process_cpu_seconds_total, process_resident_memory_bytes...: of the control core when this
        # adapter runs in a child process of it (the supervisor names the core's pid), else of this one.
        core_pid = os.environ.get(CORE_PID_VARIABLE, "")
        ProcessCollector(registry=self.registry, pid=lambda: core_pid if core_pid.isdigit() else "self")
