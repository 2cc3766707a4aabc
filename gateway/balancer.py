"""The SOC balancer: turns one fleet snapshot and the site request into per-node setpoints.

Pure: no I/O, no clock; the cycle time comes in as `now_s` and everything that must outlive a cycle
(hysteresis latches, calibration phases, previous setpoints) goes in and out as `BalancerMemory`.
Sign convention: positive power = discharge.

Rules, per node *i* with usable energy E_i (Wh, nameplate × SOH), reserve r and ceiling c:

- **Discharge** share ∝ energy above reserve, E_i·(soc_i − r); **charge** share ∝ headroom, E_i·(c − soc_i),
  so every pack reaches reserve (or ceiling) at the same time whatever its size or chemistry.
- Each share is clamped to the node's limit and the excess is handed to the others (water-filling) until
  the request is met or every node is at its limit; the rest is reported as unserved.
- **Limits** are magnitudes (the sign of a reported limit is ignored). A node that does not report a limit
  gets `BalancerParams.default_charge_limit_w` / `default_discharge_limit_w`, 0 by default: power is
  never sent to a node on a guess; configure a default for devices without limit registers.
- **Reserve**: a node at or below r stops discharging (mode at_reserve) and resumes only above
  r + reserve_hysteresis_pct. It may still charge.
- **Charge source**: with `pv` all packs charge by headroom. With `ac` (grid) the packs below reserve come
  first, in proportion to their deficit E_i·(r − soc_i), so the fleet's backup reserve is restored first;
  only power they cannot take (limits) goes to the others by headroom. A charge request is never refused
  just because of its source: whether the grid may charge the fleet is the site controller's decision.
- **Thermal bypass**: a node whose hottest reading (temp_max_c, else temp_c) is more than thermal_delta_c
  above the mean of the reachable nodes leaves the dispatch (setpoint 0, both directions) until it is back
  at or below mean + delta − thermal_hysteresis_c.
- **Thermal derating**: before that, in the last thermal_derate_c below mean + delta, both of the node's
  limits fall linearly to 0, and what it cannot take goes to the others. A pack that heats under load
  then settles where it can keep working instead of cycling in and out of bypass (on/off loses energy:
  heat grows with the square of the power). 0 disables.
- **Out of the dispatch in the same cycle**: maintenance (commanded, or the device reports state
  maintenance), offline (quality failed, or telemetry older than max_telemetry_age_s: stale telemetry
  younger than that is used as is), fault (state fault) and nodes without SOC or capacity.
- **Deep calibration** (`SiteCommand.calibrate`): the node leaves the balanced set, discharges alone at
  calibration_c_rate × E_i to calibration_floor_pct (or until its BMS refuses to discharge below reserve),
  then charges to calibration_full_pct (or until its BMS refuses charge above the ceiling), then rejoins.
  The rest of the fleet serves request − calibration power, so the site still sees its request; the
  calibration power is cut back when the others cannot absorb it, so calibration never pushes power the
  site did not ask for. The phase is kept while the node stays in `calibrate`; remove it to abort or to
  allow another run.
- **balancing_enabled False**: equal shares, each clamped to its node's limit and the excess handed on (the
  behaviour of a gateway without SOC balancing). Reserve, ceiling, thermal and offline rules still apply.
- **No oscillation, no flash wear**: a node keeps its previous setpoint when the new one differs by less
  than its deadband, the larger of setpoint_deadband_w and setpoint_deadband_pct of its limit (unless the
  old or the new one is 0, or the sign changes); when the held setpoints would make the fleet total
  miss its target by the fleet deadband (the larger of setpoint_deadband_w and setpoint_deadband_pct of
  the target) or more, the holds furthest from target are released. Then each change is limited to
  ramp_w_per_s × dt (dt from the memory's timestamp), except where a node's allowed range forces it
  (offline, thermal, reserve, a lower limit: immediate).
  Hysteresis latches keep modes from chattering. With constant inputs the output is constant.

`Dispatch.requested_w = served_w + unserved_w` always (served = sum of setpoints, so a ramp in progress
shows as unserved); the E_UNSERVED_POWER alarm is raised only when the fleet cannot serve the request.

Alarm codes (stable strings; node alarms in NodeDispatch.alarms, every code raised in Dispatch.alarms):

- E_NODE_OFFLINE: telemetry failed or older than max_telemetry_age_s (node).
- E_NODE_FAULT: the device reports state fault (node).
- E_MISSING_TELEMETRY: no SOC, or no capacity and no default_capacity_wh (node).
- E_THERMAL_EXCURSION: thermal bypass (node).
- E_AT_RESERVE: the node is at its reserve and does not discharge (node).
- E_UNSERVED_POWER: the fleet cannot serve the request by more than unserved_tolerance_w (fleet).
- E_UNKNOWN_NODE: the command names a node that is not in the fleet in maintenance or calibrate (fleet).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from gateway.fleet import FleetState, NodeState, Quality

E_NODE_OFFLINE = "E_NODE_OFFLINE"
E_NODE_FAULT = "E_NODE_FAULT"
E_MISSING_TELEMETRY = "E_MISSING_TELEMETRY"
E_THERMAL_EXCURSION = "E_THERMAL_EXCURSION"
E_AT_RESERVE = "E_AT_RESERVE"
E_UNSERVED_POWER = "E_UNSERVED_POWER"
E_UNKNOWN_NODE = "E_UNKNOWN_NODE"


class ChargeSource(enum.StrEnum):
    AC = "ac"  # grid: restore the reserve of low packs first
    PV = "pv"  # local generation: every pack by headroom


class NodeMode(enum.StrEnum):
    ACTIVE = "active"
    AT_RESERVE = "at_reserve"
    BYPASSED_THERMAL = "bypassed_thermal"
    OFFLINE = "offline"
    MAINTENANCE = "maintenance"
    CALIBRATING = "calibrating"


class CalibrationPhase(enum.StrEnum):
    DISCHARGING = "discharging"
    CHARGING = "charging"
    DONE = "done"  # kept until the node leaves SiteCommand.calibrate, so one command runs one cycle


@dataclass(frozen=True)
class SiteCommand:
    """What the site asks of the fleet this cycle (from SCADA, or the config's defaults)."""

    request_w: float = 0.0  # + = discharge, − = charge
    charge_source: ChargeSource = ChargeSource.PV
    balancing_enabled: bool = True
    maintenance: frozenset[str] = frozenset()
    calibrate: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not math.isfinite(self.request_w):
            raise ValueError(f"site request_w must be a finite number of watts, got {self.request_w!r}")
        object.__setattr__(self, "request_w", float(self.request_w))
        object.__setattr__(self, "charge_source", ChargeSource(self.charge_source))
        object.__setattr__(self, "maintenance", frozenset(self.maintenance))
        object.__setattr__(self, "calibrate", frozenset(self.calibrate))


@dataclass(frozen=True)
class BalancerParams:
    """Tuning of the balancer; every field is checked when the object is made."""

    reserve_pct: float = 10.0  # backup reserve kept in every pack
    # 95 %, not 100: the top of the SOC range is where cells age fastest and BMS SOC estimates drift; the
    # last 5 % also leave headroom to absorb an unplanned PV surplus. Sites that need it all set 100.
    ceiling_pct: float = 95.0
    reserve_hysteresis_pct: float = 2.0
    thermal_delta_c: float = 5.0
    thermal_hysteresis_c: float = 2.0
    # Starts where a bypassed pack is let back in (delta − hysteresis), so leaving bypass is no step.
    thermal_derate_c: float = 2.0
    setpoint_deadband_w: float = 10.0  # 0 disables
    # Relative deadband: % of the node's limit in the setpoint's direction (and of the site request for the
    # fleet total). SOC telemetry comes in 0.1 % steps, and each step moves a big or nearly empty pack's
    # share by more than a fixed 10 W: without it, a long discharge rewrites setpoints every ~40 s.
    setpoint_deadband_pct: float = 1.0
    ramp_w_per_s: float = math.inf  # per node; inf disables (most PCS ramp on their own)
    # Four 100 ms cycles: a pack that missed three polls in a row still takes part.
    max_telemetry_age_s: float = 0.4
    calibration_floor_pct: float = 5.0
    calibration_full_pct: float = 100.0
    calibration_c_rate: float = 0.2  # calibration power = c_rate × usable Wh (W), within the node's limits
    default_charge_limit_w: float = 0.0  # for nodes that report no limit; may be inf
    default_discharge_limit_w: float = 0.0
    default_capacity_wh: float | None = None  # for nodes that report no capacity
    unserved_tolerance_w: float = 1.0  # shortfalls up to this are rounding, not an alarm

    def __post_init__(self) -> None:
        checks = (
            ("0 <= reserve_pct < ceiling_pct <= 100", 0.0 <= self.reserve_pct < self.ceiling_pct <= 100.0),
            (
                "0 <= reserve_hysteresis_pct and reserve_pct + reserve_hysteresis_pct < ceiling_pct",
                self.reserve_hysteresis_pct >= 0.0
                and self.reserve_pct + self.reserve_hysteresis_pct < self.ceiling_pct,
            ),
            ("thermal_delta_c > 0", self.thermal_delta_c > 0.0),
            (
                "0 <= thermal_hysteresis_c < thermal_delta_c",
                0.0 <= self.thermal_hysteresis_c < self.thermal_delta_c,
            ),
            (
                "0 <= thermal_derate_c <= thermal_delta_c",
                0.0 <= self.thermal_derate_c <= self.thermal_delta_c,
            ),
            ("setpoint_deadband_w >= 0 (finite)", 0.0 <= self.setpoint_deadband_w < math.inf),
            ("0 <= setpoint_deadband_pct <= 10", 0.0 <= self.setpoint_deadband_pct <= 10.0),
            ("ramp_w_per_s > 0 (inf disables)", self.ramp_w_per_s > 0.0),
            ("max_telemetry_age_s > 0 (finite)", 0.0 < self.max_telemetry_age_s < math.inf),
            (
                "0 <= calibration_floor_pct < calibration_full_pct <= 100",
                0.0 <= self.calibration_floor_pct < self.calibration_full_pct <= 100.0,
            ),
            ("calibration_c_rate > 0 (finite)", 0.0 < self.calibration_c_rate < math.inf),
            ("default_charge_limit_w >= 0", self.default_charge_limit_w >= 0.0),
            ("default_discharge_limit_w >= 0", self.default_discharge_limit_w >= 0.0),
            (
                "default_capacity_wh > 0 (finite) or None",
                self.default_capacity_wh is None or 0.0 < self.default_capacity_wh < math.inf,
            ),
            ("unserved_tolerance_w >= 0 (finite)", 0.0 <= self.unserved_tolerance_w < math.inf),
        )
        # NaN fails every comparison above, so it is reported too.
        problems = [rule for rule, ok in checks if not ok]
        if problems:
            raise ValueError(
                f"balancer parameters violate: {'; '.join(problems)}; fix the balancer section of the "
                f"site config (got {self})"
            )


@dataclass(frozen=True)
class BalancerMemory:
    """What one cycle hands to the next. Start with None; keep `Dispatch.memory` for the next call."""

    timestamp_s: float
    setpoints_w: Mapping[str, float] = field(default_factory=dict)
    at_reserve: frozenset[str] = frozenset()
    thermal_bypass: frozenset[str] = frozenset()
    calibration: Mapping[str, CalibrationPhase] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "setpoints_w", MappingProxyType(dict(self.setpoints_w)))
        object.__setattr__(self, "calibration", MappingProxyType(dict(self.calibration)))
        object.__setattr__(self, "at_reserve", frozenset(self.at_reserve))
        object.__setattr__(self, "thermal_bypass", frozenset(self.thermal_bypass))


@dataclass(frozen=True)
class NodeDispatch:
    node_id: str
    setpoint_w: float
    mode: NodeMode
    alarms: tuple[str, ...] = ()


@dataclass(frozen=True)
class Dispatch:
    nodes: tuple[NodeDispatch, ...]
    requested_w: float
    served_w: float
    unserved_w: float
    alarms: tuple[str, ...]
    memory: BalancerMemory

    @property
    def setpoints_w(self) -> dict[str, float]:
        return {node.node_id: node.setpoint_w for node in self.nodes}

    def node(self, node_id: str) -> NodeDispatch:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise KeyError(f"no node {node_id!r} in the dispatch")


# A share rule: (usable energy Wh, SOC %, bound %, charging) -> weight >= 0. The bound is the reserve when
# discharging, the ceiling when charging (the reserve for the AC "below reserve first" tier).
ShareWeight = Callable[[float, float, float, bool], float]


def energy_share_weight(energy_wh: float, soc_pct: float, bound_pct: float, charging: bool) -> float:
    """The product's rule: energy above reserve (discharge) or below the bound (charge), in Wh."""
    margin = bound_pct - soc_pct if charging else soc_pct - bound_pct
    return energy_wh * max(0.0, margin) / 100.0


def equal_share_weight(energy_wh: float, soc_pct: float, bound_pct: float, charging: bool) -> float:
    """Every eligible node alike (balancing disabled)."""
    return 1.0


def water_fill(amount_w: float, weights: Sequence[float], caps_w: Sequence[float]) -> list[float]:
    """Split `amount_w` (>= 0) in proportion to `weights`, no node above its cap, excess to the others.

    Nodes with zero weight or cap get nothing. The result sums to min(amount, sum of usable caps).
    """
    allocation = [0.0] * len(weights)
    eligible = [i for i, (w, cap) in enumerate(zip(weights, caps_w, strict=True)) if w > 0.0 and cap > 0.0]
    if amount_w <= 0.0 or not eligible:
        return allocation
    # Scaled to a largest weight of 1 so that cap/weight cannot overflow for any sane weight.
    top = max(weights[i] for i in eligible)
    weight = {i: w for i in eligible if (w := weights[i] / top) > 0.0}  # an underflow counts as no weight
    # Sorting by cap/weight finds the binding nodes in one pass: if the node with the smallest ratio does
    # not bind at the current level, none of the rest does.
    order = sorted(weight, key=lambda i: caps_w[i] / weight[i])
    weight_left = [0.0] * (len(order) + 1)
    for k in range(len(order) - 1, -1, -1):
        weight_left[k] = weight_left[k + 1] + weight[order[k]]
    remaining = amount_w
    for k, i in enumerate(order):
        if remaining * weight[i] / weight_left[k] >= caps_w[i]:
            allocation[i] = caps_w[i]
            remaining -= caps_w[i]
            continue
        for j in order[k:]:
            # min(): the cap holds even where rounding in a degenerate split would overshoot it.
            allocation[j] = min(caps_w[j], remaining * weight[j] / weight_left[k])
        break
    return allocation


@dataclass(slots=True)
class _Node:
    """Working record of one node during one call."""

    state: NodeState
    mode: NodeMode
    alarms: tuple[str, ...]
    soc_pct: float = 0.0  # clamped to [0, 100]
    energy_wh: float = 0.0
    charge_cap_w: float = 0.0
    discharge_cap_w: float = 0.0
    target_w: float = 0.0

    @property
    def balanced(self) -> bool:
        return self.mode is NodeMode.ACTIVE or self.mode is NodeMode.AT_RESERVE

    @property
    def allowed_w(self) -> tuple[float, float]:
        """The setpoint range this node may have now (charge as negative)."""
        mode = self.mode
        if mode is NodeMode.ACTIVE or mode is NodeMode.CALIBRATING:
            return -self.charge_cap_w, self.discharge_cap_w
        if mode is NodeMode.AT_RESERVE:
            return -self.charge_cap_w, 0.0
        return 0.0, 0.0


def dispatch(
    fleet: FleetState,
    command: SiteCommand,
    params: BalancerParams,
    memory: BalancerMemory | None,
    now_s: float,
    *,
    share_weight: ShareWeight | None = None,
) -> Dispatch:
    """Setpoints for every node of `fleet` this cycle; keep `result.memory` for the next call.

    `share_weight` replaces the share rule (for comparisons in bench/); by default it is the energy rule,
    or equal shares when the command disables balancing.
    """
    if not math.isfinite(now_s):
        raise ValueError(f"dispatch needs a finite now_s (seconds), got {now_s!r}")
    if share_weight is None:
        share_weight = energy_share_weight if command.balancing_enabled else equal_share_weight
    previous = memory if memory is not None else BalancerMemory(timestamp_s=now_s)
    named = command.maintenance | command.calibrate
    fleet_alarms = {E_UNKNOWN_NODE} if any(node_id not in fleet for node_id in named) else set()

    cycle = _Assessment(command, params, previous, _mean_temperature(fleet.nodes, params))
    nodes = [_assess(state, cycle) for state in fleet.nodes]
    at_reserve, thermal, phases = cycle.at_reserve, cycle.thermal, cycle.phases

    calibrating = [node for node in nodes if node.mode is NodeMode.CALIBRATING]
    balanced = [node for node in nodes if node.balanced]
    for node in calibrating:
        rate_w = params.calibration_c_rate * node.energy_wh
        if phases[node.state.node_id] is CalibrationPhase.DISCHARGING:
            node.target_w = min(rate_w, node.discharge_cap_w)
        else:
            node.target_w = -min(rate_w, node.charge_cap_w)
    _fit_calibration(command.request_w, calibrating, balanced, params)
    need_w = command.request_w - sum(node.target_w for node in calibrating)
    _allocate(need_w, balanced, command.charge_source, params, share_weight)

    target_total_w = sum(node.target_w for node in nodes)
    if abs(command.request_w - target_total_w) > params.unserved_tolerance_w:
        fleet_alarms.add(E_UNSERVED_POWER)
    setpoints = _smooth(nodes, previous if memory is not None else None, params, now_s)
    served_w = sum(setpoints)

    results = tuple(
        NodeDispatch(node.state.node_id, setpoint, node.mode, node.alarms)
        for node, setpoint in zip(nodes, setpoints, strict=True)
    )
    for node in nodes:
        fleet_alarms.update(node.alarms)
    return Dispatch(
        nodes=results,
        requested_w=command.request_w,
        served_w=served_w,
        unserved_w=command.request_w - served_w,
        alarms=tuple(sorted(fleet_alarms)),
        memory=BalancerMemory(
            timestamp_s=now_s,
            setpoints_w={result.node_id: result.setpoint_w for result in results},
            at_reserve=frozenset(at_reserve),
            thermal_bypass=frozenset(thermal),
            calibration=phases,
        ),
    )


def _mean_temperature(states: Iterable[NodeState], params: BalancerParams) -> float | None:
    max_age_s, failed, isfinite = params.max_telemetry_age_s, Quality.FAILED, math.isfinite
    temps = [
        t
        for s in states
        if s.quality is not failed
        and s.age_s <= max_age_s
        and (t := s.temp_max_c if s.temp_max_c is not None else s.temp_c) is not None
        and isfinite(t)
    ]
    return sum(temps) / len(temps) if temps else None


def _thermal_derate(temp_c: float, mean_temp_c: float, params: BalancerParams) -> float:
    """The share of its limits a node keeps at this temperature: 1 below the derating band, 0 at its top."""
    if params.thermal_derate_c <= 0.0:
        return 1.0
    margin_c = mean_temp_c + params.thermal_delta_c - temp_c
    return min(1.0, max(0.0, margin_c / params.thermal_derate_c))


@dataclass(slots=True)
class _Assessment:
    """What `_assess` reads for every node of one call, and the latches and phases it fills in."""

    command: SiteCommand
    params: BalancerParams
    previous: BalancerMemory
    mean_temp_c: float | None
    at_reserve: set[str] = field(default_factory=set)
    thermal: set[str] = field(default_factory=set)
    phases: dict[str, CalibrationPhase] = field(default_factory=dict)


def _assess(state: NodeState, cycle: _Assessment) -> _Node:
    """Update this node's latches and phase (into `cycle`'s collections) and decide its mode.

    Runs for every node every cycle: written with inline tests rather than helper calls."""
    command, params, previous, mean_temp_c = cycle.command, cycle.params, cycle.previous, cycle.mean_temp_c
    at_reserve, thermal, phases = cycle.at_reserve, cycle.thermal, cycle.phases
    node_id = state.node_id
    isfinite, isnan = math.isfinite, math.isnan
    reachable = state.quality is not Quality.FAILED and state.age_s <= params.max_telemetry_age_s
    soc = state.soc_pct if reachable else None
    if soc is not None and not isfinite(soc):
        soc = None
    capacity = state.capacity_wh if state.capacity_wh is not None else params.default_capacity_wh
    energy: float | None = None
    if capacity is not None and isfinite(capacity):
        soh = state.soh_pct
        if soh is None or not isfinite(soh):
            soh = 100.0
        energy = (capacity if capacity > 0.0 else 0.0) * (soh if soh > 0.0 else 0.0) / 100.0
    reported = state.charge_limit_w
    charge_cap = params.default_charge_limit_w if reported is None or isnan(reported) else abs(reported)
    reported = state.discharge_limit_w
    discharge_cap = params.default_discharge_limit_w if reported is None or isnan(reported) else abs(reported)

    # Latches carry over unchanged while the facts that would change them are unknown.
    latched = node_id in previous.at_reserve
    if soc is not None:
        latched = (
            soc <= params.reserve_pct + params.reserve_hysteresis_pct
            if latched
            else soc <= params.reserve_pct
        )
    if latched:
        at_reserve.add(node_id)

    hot = node_id in previous.thermal_bypass
    temp = (state.temp_max_c if state.temp_max_c is not None else state.temp_c) if reachable else None
    if temp is not None and isfinite(temp) and mean_temp_c is not None:
        limit_c = mean_temp_c + params.thermal_delta_c
        hot = temp > limit_c - params.thermal_hysteresis_c if hot else temp > limit_c
        if not hot:
            derate = _thermal_derate(temp, mean_temp_c, params)
            charge_cap *= derate
            discharge_cap *= derate
    if hot:
        thermal.add(node_id)

    phase: CalibrationPhase | None = None
    if node_id in command.calibrate:
        phase = previous.calibration.get(node_id, CalibrationPhase.DISCHARGING)
        if soc is not None:
            phase = _next_phase(phase, soc, state, params)
        phases[node_id] = phase

    alarms: tuple[str, ...] = ()
    if node_id in command.maintenance or state.state == "maintenance":
        mode = NodeMode.MAINTENANCE
    elif not reachable:
        mode, alarms = NodeMode.OFFLINE, (E_NODE_OFFLINE,)
    elif state.state == "fault":
        mode, alarms = NodeMode.OFFLINE, (E_NODE_FAULT,)
    elif soc is None or energy is None:
        mode, alarms = NodeMode.OFFLINE, (E_MISSING_TELEMETRY,)
    elif hot:
        mode, alarms = NodeMode.BYPASSED_THERMAL, (E_THERMAL_EXCURSION,)
    elif phase is CalibrationPhase.DISCHARGING or phase is CalibrationPhase.CHARGING:
        mode = NodeMode.CALIBRATING
    elif latched:
        mode, alarms = NodeMode.AT_RESERVE, (E_AT_RESERVE,)
    else:
        mode = NodeMode.ACTIVE
    clamped = soc or 0.0
    clamped = 100.0 if clamped >= 100.0 else (clamped if clamped > 0.0 else 0.0)
    return _Node(state, mode, alarms, clamped, energy or 0.0, charge_cap, discharge_cap)


def _next_phase(
    phase: CalibrationPhase, soc: float, state: NodeState, params: BalancerParams
) -> CalibrationPhase:
    # A BMS that reports a zero limit near the end of the range has reached the end it allows (its own
    # reserve, or its charge taper): that end counts as reached, or calibration would never finish.
    if phase is CalibrationPhase.DISCHARGING and (
        soc <= params.calibration_floor_pct or (soc <= params.reserve_pct and state.discharge_limit_w == 0.0)
    ):
        return CalibrationPhase.CHARGING
    if phase is CalibrationPhase.CHARGING and (
        soc >= params.calibration_full_pct or (soc >= params.ceiling_pct and state.charge_limit_w == 0.0)
    ):
        return CalibrationPhase.DONE
    return phase


def _fit_calibration(
    request_w: float, calibrating: list[_Node], balanced: list[_Node], params: BalancerParams
) -> None:
    """Cut calibration power back to what the balanced nodes can offset, so the site sees its request."""
    can_charge_w = sum(n.charge_cap_w for n in balanced if n.soc_pct < params.ceiling_pct)
    can_discharge_w = sum(n.discharge_cap_w for n in balanced if n.mode is NodeMode.ACTIVE)
    need_w = request_w - sum(n.target_w for n in calibrating)
    if need_w < -can_charge_w:
        _shrink([n for n in calibrating if n.target_w > 0.0], -can_charge_w - need_w)
    elif need_w > can_discharge_w:
        _shrink([n for n in calibrating if n.target_w < 0.0], need_w - can_discharge_w)


def _shrink(nodes: list[_Node], excess_w: float) -> None:
    total_w = sum(abs(n.target_w) for n in nodes)
    if total_w <= 0.0:
        return
    keep = max(0.0, 1.0 - excess_w / total_w)
    for node in nodes:
        node.target_w *= keep


def _allocate(
    need_w: float, balanced: list[_Node], source: ChargeSource, params: BalancerParams, weight: ShareWeight
) -> None:
    if need_w > 0.0:
        eligible = [n for n in balanced if n.mode is NodeMode.ACTIVE]
        shares = water_fill(
            need_w,
            [weight(n.energy_wh, n.soc_pct, params.reserve_pct, False) for n in eligible],
            [n.discharge_cap_w for n in eligible],
        )
        for node, share in zip(eligible, shares, strict=True):
            node.target_w = share
        return
    if need_w == 0.0:
        return
    eligible = [n for n in balanced if n.soc_pct < params.ceiling_pct]
    taken = [0.0] * len(eligible)
    remaining_w = -need_w
    if source is ChargeSource.AC:
        low = [n.soc_pct < params.reserve_pct for n in eligible]
        first = water_fill(
            remaining_w,
            [
                weight(n.energy_wh, n.soc_pct, params.reserve_pct, True) if lo else 0.0
                for n, lo in zip(eligible, low, strict=True)
            ],
            [n.charge_cap_w for n in eligible],
        )
        taken = first
        remaining_w -= sum(first)
    rest = water_fill(
        remaining_w,
        [weight(n.energy_wh, n.soc_pct, params.ceiling_pct, True) for n in eligible],
        [n.charge_cap_w - t for n, t in zip(eligible, taken, strict=True)],
    )
    for node, first_w, rest_w in zip(eligible, taken, rest, strict=True):
        node.target_w = -(first_w + rest_w)


def _smooth(
    nodes: list[_Node], previous: BalancerMemory | None, params: BalancerParams, now_s: float
) -> list[float]:
    """Apply the deadband, then the ramp limit, then each node's allowed range."""
    isfinite = math.isfinite
    before = previous.setpoints_w if previous is not None else {}
    prior: list[float | None] = []
    for node in nodes:
        p = before.get(node.state.node_id)
        if p is None and (read_back := node.state.setpoint_w) is not None and isfinite(read_back):
            p = read_back
        prior.append(p)
    targets = [node.target_w for node in nodes]
    allowed = [node.allowed_w for node in nodes]
    result = list(targets)

    fraction = params.setpoint_deadband_pct / 100.0
    fixed_w = params.setpoint_deadband_w
    held: list[int] = []
    for i, p in enumerate(prior):
        t = targets[i]
        if p is None or t == 0.0 or p == 0.0 or (p > 0.0) != (t > 0.0):
            continue  # starting or stopping is never held back
        lo, hi = allowed[i]
        relative_w = fraction * (hi if t > 0.0 else -lo)
        deadband_w = relative_w if relative_w > fixed_w else fixed_w
        if abs(t - p) < deadband_w and lo <= p <= hi:
            result[i] = p
            held.append(i)
    target_total_w = sum(targets)
    deadband = max(fixed_w, fraction * abs(target_total_w))
    error = sum(result) - target_total_w
    if held and abs(error) >= deadband:
        # Release the holds that push the total the wrong way, furthest first; each release moves the
        # error towards 0 by less than the deadband, so this stops before it overshoots.
        same_way = sorted(
            (i for i in held if (result[i] - targets[i]) * error > 0.0),
            key=lambda i: -abs(result[i] - targets[i]),
        )
        for i in same_way:
            if abs(error) < deadband:
                break
            error -= result[i] - targets[i]
            result[i] = targets[i]

    dt_s = now_s - previous.timestamp_s if previous is not None else None
    step_w = (
        params.ramp_w_per_s * max(0.0, dt_s)
        if dt_s is not None and math.isfinite(params.ramp_w_per_s)
        else None
    )
    for i, p in enumerate(prior):
        value = result[i]
        if step_w is not None and p is not None:
            value = p + min(step_w, max(-step_w, value - p))
        lo, hi = allowed[i]
        value = value if value > lo else lo
        result[i] = (value if value < hi else hi) + 0.0  # + 0.0 turns -0.0 into 0.0
    return result
