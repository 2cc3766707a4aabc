"""What the edge node publishes: its metrics, each one of the named quantities, and the ones a host may write.

The node (NBIRTH/NDATA) carries fleet quantities, the cycle's timings and `Node Control/Rebirth`; each
pack is a device (DBIRTH/DDATA/DDEATH) carrying node quantities. A metric's name is its quantity's
name without the `fleet.`/`node.` prefix; a writable one names the control target that
`mapping.controls.decide` checks. Deadbands are the named quantities' own, from the default IEC 61850
map (engineering units), so a value is reported by exception at the same step on every protocol.

Pure: no I/O, no threads.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gateway.mapping.controls import CONTROLS, Target
from gateway.mapping.iec61850 import find_map, load_map
from gateway.mapping.sources import FLEET_SOURCES, NODE_SOURCES

REBIRTH = "Node Control/Rebirth"
BD_SEQ = "bdSeq"
STEPS = ("poll", "dispatch", "write")  # the engine's per-cycle steps (CycleAccounts.steps_ms)
HEARTBEAT_CYCLES = 10  # `cycle/index` goes out every this many cycles


class DataType(enum.IntEnum):
    """The Sparkplug B datatypes used here (specification 6.4.16)."""

    INT32 = 3
    INT64 = 4
    DOUBLE = 10
    BOOLEAN = 11
    STRING = 12


@dataclass(frozen=True)
class MetricSpec:
    name: str
    source: str  # a named quantity (`fleet.*`, `node.*`), or `cycle.<step>_ms` / `cycle.overruns`
    datatype: DataType
    unit: str
    low: float | None = None  # engineering range, published as properties in the births
    high: float | None = None
    control: Target | None = None  # a host may write it (NCMD/DCMD)
    deadband: float = 0.0


_NODE_QUANTITIES = (
    ("fleet.request_w", Target.REQUEST_W),
    ("fleet.served_w", None),
    ("fleet.unserved_w", None),
    ("fleet.power_w", None),
    ("fleet.mean_soc_pct", None),
    ("fleet.usable_soc_pct", None),
    ("fleet.soc_spread_pct", None),
    ("fleet.stored_energy_wh", None),
    ("fleet.energy_above_reserve_wh", None),
    ("fleet.usable_energy_wh", None),
    ("fleet.energy_below_ceiling_wh", None),  # with energy_above_reserve_wh: the head's cluster summary
    ("fleet.available_charge_w", None),
    ("fleet.available_discharge_w", None),
    ("fleet.nodes_online", None),
    ("fleet.nodes_total", None),
    ("fleet.balancing_enabled", Target.BALANCING_ENABLED),
    ("fleet.reserve_pct", Target.RESERVE_PCT),
    ("fleet.ceiling_pct", Target.CEILING_PCT),
    ("fleet.unserved_alarm", None),
    ("fleet.node_comm_failed", None),
)
_DEVICE_QUANTITIES = (
    ("node.soc_pct", None),
    ("node.soh_pct", None),
    ("node.capacity_wh", None),
    ("node.voltage_v", None),
    ("node.current_a", None),
    ("node.power_w", None),
    ("node.setpoint_w", None),
    ("node.temp_c", None),
    ("node.temp_max_c", None),
    ("node.temp_min_c", None),
    ("node.cell_voltage_min_v", None),
    ("node.cell_voltage_max_v", None),
    ("node.charge_limit_w", None),
    ("node.discharge_limit_w", None),
    ("node.mode", None),
    ("node.online", None),
    ("node.thermal_excursion", None),
    ("node.fault", None),
    ("node.maintenance", Target.NODE_MAINTENANCE),
    ("node.calibrating", Target.NODE_CALIBRATE),
)
_COUNTS = frozenset({"fleet.nodes_online", "fleet.nodes_total", "node.mode"})


def metric_name(source: str) -> str:
    return source.split(".", 1)[1]


def _spec(source: str, unit: str, control: Target | None, deadbands: Mapping[str, float]) -> MetricSpec:
    switch = control is not None and CONTROLS[control].unit == ""
    if switch or (unit == "" and source not in _COUNTS):
        datatype = DataType.BOOLEAN
    elif source in _COUNTS:
        datatype = DataType.INT32
    else:
        datatype = DataType.DOUBLE
    low, high = (0.0, 100.0) if unit == "%" else (None, None)
    if control is not None and CONTROLS[control].low is not None:
        low, high = CONTROLS[control].low, CONTROLS[control].high
    return MetricSpec(metric_name(source), source, datatype, unit, low, high, control,
                      deadbands.get(source, 0.0))  # fmt: skip


@dataclass(frozen=True)
class MetricTable:
    node: tuple[MetricSpec, ...]  # fleet quantities and cycle timings (NBIRTH/NDATA)
    device: tuple[MetricSpec, ...]  # one pack's quantities (DBIRTH/DDATA)

    def node_command(self, name: str) -> MetricSpec | None:
        return _writable(self.node, name)

    def device_command(self, name: str) -> MetricSpec | None:
        return _writable(self.device, name)


def _writable(specs: tuple[MetricSpec, ...], name: str) -> MetricSpec | None:
    for spec in specs:
        if spec.name == name and spec.control is not None:
            return spec
    return None


def quantity_deadbands(config_dir: Path) -> dict[str, float]:
    """The deadband of each named quantity, in its unit, from the default IEC 61850 map."""
    iec_map = load_map(find_map("default", config_dir))
    deadbands: dict[str, float] = {}
    for device in (iec_map.fleet, iec_map.pack):
        for logical_node in device.logical_nodes:
            for data_object in logical_node.objects:
                if data_object.source is not None and data_object.deadband > 0.0:
                    deadbands.setdefault(data_object.source, data_object.deadband)
    return deadbands


def metric_table(deadbands: Mapping[str, float]) -> MetricTable:
    node = [_spec(source, FLEET_SOURCES[source].unit, control, deadbands)
            for source, control in _NODE_QUANTITIES]  # fmt: skip
    node += [MetricSpec(f"cycle/{step}_ms", f"cycle.{step}_ms", DataType.DOUBLE, "ms", deadband=1.0)
             for step in STEPS]  # fmt: skip
    node.append(MetricSpec("cycle/overruns", "cycle.overruns", DataType.INT64, ""))
    # The cycle counter, reported every 10th cycle (its deadband): a heartbeat in NDATA even when nothing
    # else moves, so a host sees a silent node long before its broker notices an expired keepalive.
    node.append(MetricSpec("cycle/index", "cycle.index", DataType.INT64, "", deadband=HEARTBEAT_CYCLES - 1))
    device = [_spec(source, NODE_SOURCES[source].unit, control, deadbands)
              for source, control in _DEVICE_QUANTITIES]  # fmt: skip
    return MetricTable(tuple(node), tuple(device))
