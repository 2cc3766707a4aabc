"""The named quantities a point map can publish, computed from one cycle's snapshot.

The DNP3 and IEC 61850 maps (`mappings/`) refer to these names (`source: fleet.mean_soc_pct`,
`source: node.soc_pct`), so both protocols show the same numbers computed in one place, and a map is
checked against this table when it is loaded. A value is None when it is unknown (a node offline, a
point its profile lacks): the adapters publish that as bad quality (DNP3 COMM_LOST / IEC 61850 invalid),
never as a stale number.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gateway.balancer import NodeMode
from gateway.fleet import FleetState, NodeState
from gateway.snapshot import CycleSnapshot

Value = float | bool | None

# A fleet is "charging"/"discharging" above this measured power (W): below it, standby drain and noise.
ACTIVITY_THRESHOLD_W = 50.0
# Node modes as integers for protocols without strings (DNP3 analog, IEC 61850 INS): stable codes.
MODE_CODES: Mapping[NodeMode, int] = {
    NodeMode.ACTIVE: 0,
    NodeMode.AT_RESERVE: 1,
    NodeMode.BYPASSED_THERMAL: 2,
    NodeMode.OFFLINE: 3,
    NodeMode.MAINTENANCE: 4,
    NodeMode.CALIBRATING: 5,
}


@dataclass(frozen=True)
class FleetSource:
    unit: str
    description: str
    read: Callable[[CycleSnapshot], Value]


@dataclass(frozen=True)
class NodeSource:
    unit: str
    description: str
    read: Callable[[CycleSnapshot, NodeState], Value]


def _usable_energy_wh(snapshot: CycleSnapshot) -> float:
    return sum(node.usable_energy_wh or 0.0 for node in snapshot.fleet.online_nodes)


def _nameplate_energy_wh(snapshot: CycleSnapshot) -> float:
    return sum(node.capacity_wh or 0.0 for node in snapshot.fleet.nodes)


def _effective_energy_wh(snapshot: CycleSnapshot) -> float:
    return sum(node.usable_energy_wh or 0.0 for node in snapshot.fleet.nodes)


def energy_below_ceiling_wh(fleet: FleetState, ceiling_pct: float) -> float:
    """Energy the online packs can take before every one reaches `ceiling_pct` (the charge twin of
    `FleetState.energy_above_reserve_wh`; a worker's cluster summary carries both)."""
    total = 0.0
    for node in fleet.online_nodes:
        energy = node.usable_energy_wh
        if energy is not None and node.soc_pct is not None:
            total += energy * max(0.0, ceiling_pct - node.soc_pct) / 100.0
    return total


def _usable_soc_pct(snapshot: CycleSnapshot) -> float | None:
    """Energy above reserve as a share of the usable energy above reserve (AN2018's "usable SOC")."""
    reserve = snapshot.params.reserve_pct
    span = _usable_energy_wh(snapshot) * (snapshot.params.ceiling_pct - reserve) / 100.0
    if span <= 0.0:
        return None
    return min(100.0, 100.0 * snapshot.fleet.energy_above_reserve_wh(reserve) / span)


def _stranded_energy_wh(snapshot: CycleSnapshot) -> float:
    """Energy above reserve left in the other packs when the first discharging pack reaches reserve,
    at the current setpoints. 0 when the shares are energy-proportional (or the fleet is not discharging)."""
    reserve = snapshot.params.reserve_pct
    above: list[tuple[float, float]] = []  # (energy above reserve Wh, setpoint W)
    for node in snapshot.fleet.online_nodes:
        decision = snapshot.node_dispatch(node.node_id)
        energy = node.usable_energy_wh
        if decision is None or energy is None or node.soc_pct is None:
            continue
        above.append((energy * max(0.0, node.soc_pct - reserve) / 100.0, decision.setpoint_w))
    discharging = [(energy, power) for energy, power in above if power > 0.0]
    if not discharging:
        return 0.0
    hours_to_first_empty = min(energy / power for energy, power in discharging)
    delivered = sum(min(energy, power * hours_to_first_empty) for energy, power in discharging)
    return max(0.0, sum(energy for energy, _ in above) - delivered)


def _mode_is(snapshot: CycleSnapshot, node: NodeState, mode: NodeMode) -> bool:
    decision = snapshot.node_dispatch(node.node_id)
    return decision is not None and decision.mode is mode


def _node_alarm(snapshot: CycleSnapshot, node: NodeState, code: str) -> bool:
    decision = snapshot.node_dispatch(node.node_id)
    return decision is not None and code in decision.alarms


def _any_mode(snapshot: CycleSnapshot, mode: NodeMode) -> bool:
    return any(node.mode is mode for node in snapshot.dispatch.nodes)


def _current_limit_a(limit_w: float | None, voltage_v: float | None) -> float | None:
    if limit_w is None or voltage_v is None or voltage_v <= 0.0:
        return None
    return limit_w / voltage_v


def _node_mode_code(snapshot: CycleSnapshot, node: NodeState) -> float | None:
    decision = snapshot.node_dispatch(node.node_id)
    return None if decision is None else float(MODE_CODES[decision.mode])


def _node_setpoint_w(snapshot: CycleSnapshot, node: NodeState) -> float | None:
    decision = snapshot.node_dispatch(node.node_id)
    return None if decision is None else decision.setpoint_w


FLEET_SOURCES: Mapping[str, FleetSource] = {
    "fleet.mean_soc_pct": FleetSource(
        "%", "energy-weighted mean state of charge of the online packs", lambda s: s.fleet.mean_soc_pct
    ),
    "fleet.usable_soc_pct": FleetSource(
        "%", "energy above reserve as a share of the usable range (reserve..ceiling)", _usable_soc_pct
    ),
    "fleet.soc_spread_pct": FleetSource(
        "%", "max − min SOC over the online packs (0 when balanced)", lambda s: s.fleet.soc_spread_pct
    ),
    "fleet.nameplate_energy_wh": FleetSource("Wh", "sum of nameplate capacities", _nameplate_energy_wh),
    "fleet.effective_energy_wh": FleetSource("Wh", "sum of nameplate × SOH, all packs", _effective_energy_wh),
    "fleet.usable_energy_wh": FleetSource("Wh", "sum of nameplate × SOH, online packs", _usable_energy_wh),
    "fleet.stored_energy_wh": FleetSource(
        "Wh", "energy stored in the online packs", lambda s: s.fleet.stored_energy_wh
    ),
    "fleet.energy_above_reserve_wh": FleetSource(
        "Wh",
        "energy the online packs can deliver before reaching reserve",
        lambda s: s.fleet.energy_above_reserve_wh(s.params.reserve_pct),
    ),
    "fleet.energy_below_ceiling_wh": FleetSource(
        "Wh",
        "energy the online packs can take before reaching the ceiling",
        lambda s: energy_below_ceiling_wh(s.fleet, s.params.ceiling_pct),
    ),
    "fleet.stranded_energy_wh": FleetSource(
        "Wh",
        "energy left above reserve when the first pack reaches it, at current setpoints",
        _stranded_energy_wh,
    ),
    "fleet.available_discharge_w": FleetSource(
        "W", "sum of the online packs' discharge limits", lambda s: s.fleet.available_discharge_w
    ),
    "fleet.available_charge_w": FleetSource(
        "W", "sum of the online packs' charge limits", lambda s: s.fleet.available_charge_w
    ),
    "fleet.power_w": FleetSource(
        "W", "measured site battery power, + = discharge", lambda s: s.fleet.total_power_w
    ),
    "fleet.request_w": FleetSource(
        "W", "site power request in force, + = discharge", lambda s: s.command.request_w
    ),
    "fleet.served_w": FleetSource(
        "W", "part of the request the dispatch serves", lambda s: s.dispatch.served_w
    ),
    "fleet.unserved_w": FleetSource(
        "W", "part of the request no pack can serve", lambda s: s.dispatch.unserved_w
    ),
    "fleet.nodes_online": FleetSource(
        "", "packs with usable telemetry", lambda s: float(len(s.fleet.online_nodes))
    ),
    "fleet.nodes_total": FleetSource("", "configured packs", lambda s: float(len(s.fleet.nodes))),
    "fleet.reserve_pct": FleetSource(
        "%", "backup reserve kept in every pack", lambda s: s.params.reserve_pct
    ),
    "fleet.ceiling_pct": FleetSource("%", "SOC ceiling for charging", lambda s: s.params.ceiling_pct),
    "fleet.balancing_enabled": FleetSource(
        "", "SOC balancing on (off: equal split)", lambda s: s.command.balancing_enabled
    ),
    "fleet.soc_at_max": FleetSource(
        "",
        "every online pack at or above the ceiling",
        lambda s: _all_soc(s, lambda soc: soc >= s.params.ceiling_pct),
    ),
    "fleet.soc_too_high": FleetSource(
        "",
        "some online pack above the ceiling",
        lambda s: _any_soc(s, lambda soc: soc > s.params.ceiling_pct),
    ),
    "fleet.soc_too_low": FleetSource(
        "", "some online pack at or below reserve", lambda s: _any_mode(s, NodeMode.AT_RESERVE)
    ),
    "fleet.soc_depleted": FleetSource(
        "",
        "every online pack at or below reserve",
        lambda s: _all_soc(s, lambda soc: soc <= s.params.reserve_pct),
    ),
    "fleet.temp_too_high": FleetSource(
        "",
        "some pack in thermal bypass (E_THERMAL_EXCURSION)",
        lambda s: _any_mode(s, NodeMode.BYPASSED_THERMAL),
    ),
    "fleet.discharging": FleetSource(
        "", "the fleet delivers power", lambda s: s.fleet.total_power_w > ACTIVITY_THRESHOLD_W
    ),
    "fleet.charging": FleetSource(
        "", "the fleet absorbs power", lambda s: s.fleet.total_power_w < -ACTIVITY_THRESHOLD_W
    ),
    "fleet.unserved_alarm": FleetSource(
        "",
        "the request is not fully served (E_UNSERVED_POWER)",
        lambda s: "E_UNSERVED_POWER" in s.dispatch.alarms,
    ),
    "fleet.node_comm_failed": FleetSource(
        "",
        "some configured pack does not answer (E_NODE_OFFLINE)",
        lambda s: any(not node.online for node in s.fleet.nodes),
    ),
}


def _all_soc(snapshot: CycleSnapshot, test: Callable[[float], bool]) -> bool:
    socs = [node.soc_pct for node in snapshot.fleet.online_nodes if node.soc_pct is not None]
    return bool(socs) and all(test(soc) for soc in socs)


def _any_soc(snapshot: CycleSnapshot, test: Callable[[float], bool]) -> bool:
    return any(test(node.soc_pct) for node in snapshot.fleet.online_nodes if node.soc_pct is not None)


NODE_SOURCES: Mapping[str, NodeSource] = {
    "node.soc_pct": NodeSource("%", "state of charge", lambda s, n: n.soc_pct),
    "node.soh_pct": NodeSource("%", "state of health", lambda s, n: n.soh_pct),
    "node.capacity_wh": NodeSource("Wh", "nameplate capacity", lambda s, n: n.capacity_wh),
    "node.usable_energy_wh": NodeSource("Wh", "nameplate × SOH", lambda s, n: n.usable_energy_wh),
    "node.voltage_v": NodeSource("V", "pack voltage", lambda s, n: n.voltage_v),
    "node.current_a": NodeSource("A", "pack current, + = discharge", lambda s, n: n.current_a),
    "node.power_w": NodeSource("W", "pack power, + = discharge", lambda s, n: n.power_w),
    "node.temp_c": NodeSource("°C", "pack temperature", lambda s, n: n.temp_c),
    "node.temp_max_c": NodeSource("°C", "hottest cell temperature", lambda s, n: n.temp_max_c),
    "node.temp_min_c": NodeSource("°C", "coldest cell temperature", lambda s, n: n.temp_min_c),
    "node.cell_voltage_min_v": NodeSource("V", "lowest cell voltage", lambda s, n: n.cell_voltage_min_v),
    "node.cell_voltage_max_v": NodeSource("V", "highest cell voltage", lambda s, n: n.cell_voltage_max_v),
    "node.charge_limit_w": NodeSource("W", "charge power limit", lambda s, n: n.charge_limit_w),
    "node.discharge_limit_w": NodeSource("W", "discharge power limit", lambda s, n: n.discharge_limit_w),
    "node.charge_current_limit_a": NodeSource(
        "A",
        "charge current limit (power limit / voltage)",
        lambda s, n: _current_limit_a(n.charge_limit_w, n.voltage_v),
    ),
    "node.discharge_current_limit_a": NodeSource(
        "A",
        "discharge current limit (power limit / voltage)",
        lambda s, n: _current_limit_a(n.discharge_limit_w, n.voltage_v),
    ),
    "node.setpoint_w": NodeSource(
        "W", "setpoint the balancer gives the pack, + = discharge", _node_setpoint_w
    ),
    "node.mode": NodeSource(
        "",
        "balancer mode: 0 active, 1 at reserve, 2 thermal bypass, 3 offline, 4 maintenance, 5 calibrating",
        _node_mode_code,
    ),
    "node.online": NodeSource("", "telemetry usable (not failed)", lambda s, n: n.online),
    "node.comm_failed": NodeSource(
        "", "the pack does not answer (E_NODE_OFFLINE)", lambda s, n: not n.online
    ),
    "node.thermal_excursion": NodeSource(
        "",
        "E_THERMAL_EXCURSION: hotter than the fleet mean + delta",
        lambda s, n: _node_alarm(s, n, "E_THERMAL_EXCURSION"),
    ),
    "node.at_reserve": NodeSource(
        "", "at reserve: discharge stopped", lambda s, n: _mode_is(s, n, NodeMode.AT_RESERVE)
    ),
    "node.soc_at_ceiling": NodeSource(
        "",
        "SOC at or above the ceiling: charging stopped",
        lambda s, n: n.soc_pct is not None and n.soc_pct >= s.params.ceiling_pct,
    ),
    "node.maintenance": NodeSource(
        "", "in maintenance: not dispatched", lambda s, n: _mode_is(s, n, NodeMode.MAINTENANCE)
    ),
    "node.calibrating": NodeSource(
        "", "deep calibration cycle running", lambda s, n: _mode_is(s, n, NodeMode.CALIBRATING)
    ),
    "node.fault": NodeSource("", "the device reports a fault state", lambda s, n: n.state == "fault"),
}


def read_fleet(name: str, snapshot: CycleSnapshot) -> Value:
    return FLEET_SOURCES[name].read(snapshot)


# The node quantities that describe a lost pack themselves: known (and fresh) even when its telemetry
# is not.
LOSS_INDICATORS = frozenset({"node.online", "node.comm_failed", "node.mode"})


def read_node(name: str, snapshot: CycleSnapshot, node: NodeState) -> Value:
    """A node quantity; None (bad quality) when the node has no usable telemetry, except the
    quantities that describe the loss itself (online, comm_failed, mode)."""
    if not node.online and name not in LOSS_INDICATORS:
        return None
    return NODE_SOURCES[name].read(snapshot, node)
