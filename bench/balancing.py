"""Balancing scenarios: how much of a fleet's energy does socgw's balancer recover, against the alternatives?

    python -m bench.balancing [--out bench/results] [--quick] [--scenario NAME ...] [--soc-resolution PCT]
    python -m bench.balancing --random N [--seed S] [--quick]

Each scenario runs the pack physics of the simulator (`gateway.sim.physics`, stepped in-process: no Modbus,
this compares strategies, not transports) under three strategies side by side, with the same packs and the
same request: socgw's `dispatch`, an equal split and a split ∝ SOC (`bench.strategies`: they differ only
in the share rule, so reserve, thermal, offline and deadband rules are the same for all three).

One control cycle, accelerated: poll (NodeState from the physics, SOC rounded to 0.1 % as the shipped
profiles report it) → dispatch (its memory carried from cycle to cycle) → write (a setpoint, rounded to
whole watts, is sent only when it differs from what the device holds by more than the deadband, the
southbound writer's rule) → advance the physics by one cycle (1 s of simulated time; 10 s with --quick).
The request is constant: 0.25 C of the fleet's usable energy (nameplate × SOH), discharge or charge; the
run ends at the first cycle in which the fleet delivers less than 99 % of it (while no pack is offline),
or when every pack is at reserve (ceiling), or after a time limit. A pack that drops out is "failed" to
the gateway and idles (0 W: its communication-loss watchdog); when it comes back the writer re-learns
its setpoint. The packs' own firmware reserve is 0, so the balancer's reserve is the only one in play.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from matplotlib.figure import Figure

from bench.strategies import STRATEGIES
from gateway.balancer import (
    E_UNSERVED_POWER,
    BalancerMemory,
    BalancerParams,
    ChargeSource,
    NodeMode,
    SiteCommand,
)
from gateway.fleet import FleetState, NodeState, Quality
from gateway.sim.physics import Chemistry, PackParams, PackState, advance, default_params, operating_point

CYCLE_S = 1.0  # simulated seconds per control cycle (the product runs 0.1 s; see module doc)
QUICK_CYCLE_S = 10.0
C_RATE = 0.25  # request = C_RATE × fleet usable Wh, in W
SOC_RESOLUTION_PCT = 0.1  # register resolution of soc_pct in the shipped profiles
SHORTFALL_FRACTION = 0.01  # a cycle serving less than 99 % of the request is unserved
SPREAD_TARGET_PCT = 3.0
TRACE_EVERY_S = 60.0  # SOC trajectory sampling for the plots
DEFAULT_OUT = Path(__file__).resolve().parent / "results"
SECONDS_PER_HOUR = 3600.0

LABELS: Mapping[str, str] = {
    "socgw": "socgw (ours)",
    "equal_split": "equal split",
    "soc_proportional": "∝ SOC",
}

HEADLINE_DEFINITION = (
    "recovered before the first pack reached reserve = 100 % × (1 − S/S0). S0 is the fleet's usable "
    "energy above reserve at the start, Σ E_i·max(0, SOC_i − reserve) with E_i = nameplate × SOH; S is the "
    "same sum (from the physics) in the first cycle in which any pack reports SOC ≤ reserve, the moment "
    "the fleet starts losing a pack's power: the energy still stranded above reserve. Cell energy, so "
    "converter losses (η = 0.95 each way in the model, the same for every strategy) do not count against "
    "it; energy at the terminals is reported apart. For a charge run read ceiling for reserve and "
    "headroom below the ceiling for energy above reserve."
)


def measurement(cycle_s: float, soc_resolution_pct: float) -> str:
    """How the numbers were obtained, for the printed and written reports."""
    rounding = f"rounded to {soc_resolution_pct:g} %" if soc_resolution_pct > 0.0 else "not rounded"
    return (
        f"Accelerated closed loop over the pack physics of `gateway/sim/physics.py`, stepped in-process: "
        f"each control cycle reads every pack into a NodeState (SOC {rounding}), runs the strategy (memory "
        f"carried across cycles), writes each setpoint rounded to 1 W only when it differs from the "
        f"device's by more than the balancer deadband (the southbound writer's rule), then advances the "
        f"physics by one cycle of {cycle_s:g} s simulated time (the product cycles every 0.1 s; "
        f"{CYCLE_S:g} s by default, {QUICK_CYCLE_S:g} s with --quick). Constant request of {C_RATE:g} C of "
        f"the fleet's usable energy. The run ends at the first cycle, while no pack is offline, in which "
        f"the fleet cannot serve the request: the strategy reports unserved power (E_UNSERVED_POWER) and "
        f"the packs deliver less than {100 * (1 - SHORTFALL_FRACTION):g} % of the request (that cycle "
        f"included); or when every pack is at reserve. The three strategies share every rule but the "
        f"share (reserve 10 %, ceiling 95 %, thermal derating from 3 °C and bypass at 5 °C above the "
        f"mean, deadband 10 W or 1 % of the limit). "
        f"Writes per node per minute count device writes over the whole run in simulated time; a sign "
        f"flip is a written setpoint whose sign differs from the previous non-zero one; SOC spread is "
        f"max − min over all packs (physics SOC). A dropped-out pack idles at 0 W (communication-loss "
        f"watchdog)."
    )


@dataclass(frozen=True)
class PackSpec:
    node_id: str
    params: PackParams
    soc_pct: float
    temp_c: float | None = None  # None: the pack's ambient


@dataclass(frozen=True)
class Dropout:
    """The gateway loses a pack (telemetry quality failed) from start_s for duration_s."""

    node_id: str
    start_s: float
    duration_s: float

    def covers(self, t_s: float) -> bool:
        return self.start_s <= t_s < self.start_s + self.duration_s


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    packs: tuple[PackSpec, ...]
    charge: bool = False
    c_rate: float = C_RATE
    dropouts: tuple[Dropout, ...] = ()
    balancer: BalancerParams = field(default_factory=BalancerParams)

    @property
    def usable_wh(self) -> float:
        return sum(pack.params.usable_wh for pack in self.packs)

    @property
    def request_w(self) -> float:
        power_w = self.c_rate * self.usable_wh
        return -power_w if self.charge else power_w

    @property
    def bound_pct(self) -> float:
        return self.balancer.ceiling_pct if self.charge else self.balancer.reserve_pct

    @property
    def bound_word(self) -> str:
        return "ceiling" if self.charge else "reserve"

    def margin_wh(self, usable_wh: float, soc_pct: float) -> float:
        """Energy a pack can still deliver before reserve (or absorb before the ceiling)."""
        margin_pct = self.bound_pct - soc_pct if self.charge else soc_pct - self.bound_pct
        return usable_wh * max(0.0, margin_pct) / 100.0

    @property
    def start_margin_wh(self) -> float:
        return sum(self.margin_wh(pack.params.usable_wh, pack.soc_pct) for pack in self.packs)

    @property
    def time_limit_s(self) -> float:
        """Twice the time the fleet's margin lasts at the request, plus two hours: no run takes longer."""
        return 2.0 * self.start_margin_wh / abs(self.request_w) * SECONDS_PER_HOUR + 7200.0


@dataclass(frozen=True)
class Metrics:
    recovered_first_bound_pct: float  # the headline, see HEADLINE_DEFINITION
    first_bound_h: float | None  # None: no pack reached the bound before the run ended
    first_bound_node: str | None
    first_bound_offline: tuple[str, ...]  # packs offline at that moment: the rest carried the request
    first_bound_spread_pct: float  # SOC spread then: how far apart the packs were when one ran out
    terminal_first_bound_kwh: float  # delivered (absorbed) at the terminals by then
    recovered_end_pct: float  # the same ratio when the run ended
    terminal_end_kwh: float
    served_h: float
    ended: str  # unserved | all at bound | time limit | first bound
    final_spread_pct: float
    spread_under_target_h: float | None  # first time the spread is under SPREAD_TARGET_PCT; None: never
    writes_per_node_per_min: float
    sign_flips_max_per_node: int
    sign_flips_total: int
    dropout_shortfall_kwh: float  # request not served while a pack was offline (does not end the run)
    thermal_bypass_pack_h: float  # summed over packs


class _FirstBound(NamedTuple):
    """The first cycle in which a pack reported its bound (or the run's end, if none did)."""

    time_s: float | None
    node_id: str | None
    recovered_pct: float
    terminal_wh: float
    spread_pct: float
    offline: tuple[str, ...]


@dataclass(frozen=True)
class Trace:
    time_h: tuple[float, ...]
    soc_pct: Mapping[str, tuple[float, ...]]


@dataclass(frozen=True)
class Run:
    metrics: Metrics
    trace: Trace


@dataclass(frozen=True)
class ScenarioResult:
    scenario: Scenario
    cycle_s: float
    soc_resolution_pct: float
    runs: Mapping[str, Run]  # by strategy name


@dataclass
class _Pack:
    """One simulated pack during a run, with what the gateway saw of it and wrote to it."""

    spec: PackSpec
    state: PackState
    last_seen: NodeState | None = None
    last_seen_s: float = 0.0
    last_sign: int = 0
    writes: int = 0
    flips: int = 0
    offline: bool = False


def _reading(pack: _Pack, soc_resolution_pct: float) -> NodeState:
    params, state = pack.spec.params, pack.state
    op = operating_point(params, state)
    soc_pct = state.soc_pct
    if soc_resolution_pct > 0.0:
        soc_pct = round(soc_pct / soc_resolution_pct) * soc_resolution_pct
    return NodeState(
        node_id=pack.spec.node_id,
        soc_pct=soc_pct,
        soh_pct=params.soh_pct,
        capacity_wh=params.capacity_wh,
        voltage_v=op.voltage_v,
        current_a=op.current_a,
        power_w=op.power_w,
        temp_c=state.temp_c,
        temp_max_c=op.temp_max_c,
        charge_limit_w=op.limits.charge_w,
        discharge_limit_w=op.limits.discharge_w,
        setpoint_w=state.setpoint_w,
        enabled=state.enabled,
        state=op.state,
        alarms=op.alarms,
    )


def _poll(pack: _Pack, now_s: float, offline: bool, soc_resolution_pct: float) -> NodeState:
    """What the gateway sees: a fresh reading, or the last one marked failed while the pack is away."""
    if not offline:
        pack.last_seen, pack.last_seen_s = _reading(pack, soc_resolution_pct), now_s
        return pack.last_seen
    if pack.last_seen is None:
        return NodeState(pack.spec.node_id, quality=Quality.FAILED, error_code="E_TIMEOUT")
    return replace(
        pack.last_seen, quality=Quality.FAILED, error_code="E_TIMEOUT", age_s=now_s - pack.last_seen_s
    )


def _write(pack: _Pack, setpoint_w: float, deadband_w: float) -> None:
    """The southbound writer's rule: send only a real change; count device writes and sign flips."""
    value_w = float(round(setpoint_w))  # setpoint registers hold whole watts
    if abs(value_w - pack.state.setpoint_w) <= deadband_w:
        return
    pack.state = replace(pack.state, setpoint_w=value_w)
    pack.writes += 1
    sign = (value_w > 0.0) - (value_w < 0.0)
    if sign:
        if pack.last_sign and sign != pack.last_sign:
            pack.flips += 1
        pack.last_sign = sign


def _terminal_wh(packs: Sequence[_Pack], charge: bool) -> float:
    """Energy moved at the terminals in the request's direction (Wh)."""
    net_wh = sum(pack.state.discharged_wh - pack.state.charged_wh for pack in packs)
    return -net_wh if charge else net_wh


def _spread_pct(packs: Sequence[_Pack]) -> float:
    socs = [pack.state.soc_pct for pack in packs]
    return max(socs) - min(socs)


def _recovered_pct(scenario: Scenario, packs: Sequence[_Pack]) -> float:
    start = scenario.start_margin_wh
    if start <= 0.0:
        return 100.0
    left = sum(scenario.margin_wh(pack.spec.params.usable_wh, pack.state.soc_pct) for pack in packs)
    return 100.0 * (1.0 - left / start)


def _at_bound(scenario: Scenario, readings: Sequence[NodeState]) -> list[str]:
    """The reachable packs that report their SOC at or beyond reserve (ceiling when charging)."""
    return [
        r.node_id
        for r in readings
        if r.quality is not Quality.FAILED
        and r.soc_pct is not None
        and (r.soc_pct >= scenario.bound_pct if scenario.charge else r.soc_pct <= scenario.bound_pct)
    ]


def simulate(
    scenario: Scenario,
    strategy_name: str,
    cycle_s: float = CYCLE_S,
    *,
    soc_resolution_pct: float = SOC_RESOLUTION_PCT,
    stop_at_first_bound: bool = False,
) -> Run:
    """Run one strategy through one scenario (see the module doc for the cycle)."""
    strategy = STRATEGIES[strategy_name]
    params = scenario.balancer
    command = SiteCommand(request_w=scenario.request_w, charge_source=ChargeSource.PV)
    request_w = abs(scenario.request_w)
    packs = [
        _Pack(
            spec=spec,
            state=PackState(
                soc_pct=spec.soc_pct, temp_c=spec.params.ambient_c if spec.temp_c is None else spec.temp_c
            ),
        )
        for spec in scenario.packs
    ]
    memory: BalancerMemory | None = None
    first_bound: _FirstBound | None = None
    spread_under_s: float | None = None
    shortfall_wh = 0.0
    bypass_s = 0.0
    ended = "time limit"
    times: list[float] = []
    socs: dict[str, list[float]] = {pack.spec.node_id: [] for pack in packs}
    next_trace_s = 0.0
    now_s = 0.0

    def sample() -> None:
        times.append(now_s / SECONDS_PER_HOUR)
        for pack in packs:
            socs[pack.spec.node_id].append(pack.state.soc_pct)

    for _ in range(math.ceil(scenario.time_limit_s / cycle_s)):
        if now_s >= next_trace_s:
            sample()
            next_trace_s += TRACE_EVERY_S
        if spread_under_s is None and _spread_pct(packs) < SPREAD_TARGET_PCT:
            spread_under_s = now_s
        offline = {drop.node_id for drop in scenario.dropouts if drop.covers(now_s)}
        readings = tuple(
            _poll(pack, now_s, pack.spec.node_id in offline, soc_resolution_pct) for pack in packs
        )
        at_bound = _at_bound(scenario, readings)
        if at_bound and first_bound is None:
            terminal_wh = _terminal_wh(packs, scenario.charge)
            first_bound = _FirstBound(
                now_s,
                at_bound[0],
                _recovered_pct(scenario, packs),
                terminal_wh,
                _spread_pct(packs),
                tuple(sorted(offline)),
            )
            if stop_at_first_bound:
                ended = "first bound"
                break
        if len(at_bound) == len(packs):
            ended = f"all at {scenario.bound_word}"
            break
        result = strategy(FleetState(readings, now_s), command, params, memory, now_s)
        memory = result.memory
        for pack, node in zip(packs, result.nodes, strict=True):
            if pack.spec.node_id in offline:
                # Unreachable: the writer cannot send, the pack's watchdog idles it, and on return the
                # writer re-learns the device's setpoint (0) from the first good poll.
                pack.state = replace(pack.state, setpoint_w=0.0)
            else:
                _write(pack, node.setpoint_w, params.setpoint_deadband_w)
            if node.mode is NodeMode.BYPASSED_THERMAL:
                bypass_s += cycle_s
        before_wh = _terminal_wh(packs, scenario.charge)
        for pack in packs:
            pack.state = advance(pack.spec.params, pack.state, cycle_s)
        served_w = (_terminal_wh(packs, scenario.charge) - before_wh) * SECONDS_PER_HOUR / cycle_s
        now_s += cycle_s
        # Both: a shortfall inside the balancer's fleet deadband (held setpoints) is not running out.
        if E_UNSERVED_POWER in result.alarms and served_w < request_w * (1.0 - SHORTFALL_FRACTION):
            if not offline:
                ended = "unserved"
                break
            shortfall_wh += (request_w - served_w) * cycle_s / SECONDS_PER_HOUR
    sample()

    recovered_end = _recovered_pct(scenario, packs)
    terminal_end_wh = _terminal_wh(packs, scenario.charge)
    final_spread = _spread_pct(packs)
    bound = first_bound or _FirstBound(None, None, recovered_end, terminal_end_wh, final_spread, ())
    minutes = max(now_s, cycle_s) / 60.0
    metrics = Metrics(
        recovered_first_bound_pct=bound.recovered_pct,
        first_bound_h=None if bound.time_s is None else bound.time_s / SECONDS_PER_HOUR,
        first_bound_node=bound.node_id,
        first_bound_offline=bound.offline,
        first_bound_spread_pct=bound.spread_pct,
        terminal_first_bound_kwh=bound.terminal_wh / 1000.0,
        recovered_end_pct=recovered_end,
        terminal_end_kwh=terminal_end_wh / 1000.0,
        served_h=now_s / SECONDS_PER_HOUR,
        ended=ended,
        final_spread_pct=final_spread,
        spread_under_target_h=None if spread_under_s is None else spread_under_s / SECONDS_PER_HOUR,
        writes_per_node_per_min=sum(pack.writes for pack in packs) / len(packs) / minutes,
        sign_flips_max_per_node=max(pack.flips for pack in packs),
        sign_flips_total=sum(pack.flips for pack in packs),
        dropout_shortfall_kwh=shortfall_wh / 1000.0,
        thermal_bypass_pack_h=bypass_s / SECONDS_PER_HOUR,
    )
    trace = Trace(time_h=tuple(times), soc_pct={node: tuple(values) for node, values in socs.items()})
    return Run(metrics=metrics, trace=trace)


def run_scenario(
    scenario: Scenario, cycle_s: float = CYCLE_S, soc_resolution_pct: float = SOC_RESOLUTION_PCT
) -> ScenarioResult:
    runs = {
        name: simulate(scenario, name, cycle_s, soc_resolution_pct=soc_resolution_pct) for name in STRATEGIES
    }
    return ScenarioResult(scenario, cycle_s, soc_resolution_pct, runs)


# --- the scenarios -------------------------------------------------------------------------------------


def _packs(
    capacities_wh: Sequence[float], socs_pct: Sequence[float], sohs_pct: Sequence[float] | None = None
) -> tuple[PackSpec, ...]:
    sohs = sohs_pct if sohs_pct is not None else [100.0] * len(capacities_wh)
    return tuple(
        PackSpec(f"pack-{i + 1:02d}", default_params(capacity, soh_pct=soh), soc)
        for i, (capacity, soc, soh) in enumerate(zip(capacities_wh, socs_pct, sohs, strict=True))
    )


def _hot_pack(spec: PackSpec) -> PackSpec:
    """The same pack heating up: 8× the resistance, 0.4× the cooling and 0.1× the thermal mass (a hot
    module with poor contact to its cooling plate). The small mass gives a ~0.5 h time constant instead
    of ~2 h, so the thermal bypass cycles (out at mean + 5 °C, back at mean + 3 °C) within one run."""
    p = spec.params
    return replace(
        spec,
        params=replace(
            p,
            resistance_ohm=8.0 * p.resistance_ohm,
            cooling_w_per_k=0.4 * p.cooling_w_per_k,
            thermal_mass_j_per_k=0.1 * p.thermal_mass_j_per_k,
        ),
    )


def scenarios() -> tuple[Scenario, ...]:
    """The fixed scenarios. Packs use `default_params` (1 C power limits, LFP, 25 °C ambient)."""
    mixed = _packs([10_000.0] * 4, [70.0, 60.0, 65.0, 55.0], [100.0, 90.0, 80.0, 70.0])
    return (
        Scenario(
            name="a-four-one-low",
            title="(a) four equal 10 kWh packs at 50/50/50/35 %",
            packs=_packs([10_000.0] * 4, [50.0, 50.0, 50.0, 35.0]),
        ),
        Scenario(
            name="b-big-small",
            title="(b) 100 kWh + 50 kWh, both at 60 %",
            packs=_packs([100_000.0, 50_000.0], [60.0, 60.0]),
        ),
        Scenario(
            name="c-mixed-soh-hot",
            title="(c) 4 × 10 kWh, SOH 100/90/80/70 %, SOC 70/60/65/55 %, pack-03 heats up",
            packs=(*mixed[:2], _hot_pack(mixed[2]), mixed[3]),
        ),
        Scenario(
            name="d-dropout",
            title="(d) 4 × 10 kWh at 70/65/60/55 %, pack-02 offline from 0:15 to 0:45",
            packs=_packs([10_000.0] * 4, [70.0, 65.0, 60.0, 55.0]),
            dropouts=(Dropout("pack-02", start_s=900.0, duration_s=1800.0),),
        ),
        Scenario(
            name="e-pv-charge",
            title="(e) PV charge: 5/10/10/20 kWh at 10/15/30/40 %",
            packs=_packs([5_000.0, 10_000.0, 10_000.0, 20_000.0], [10.0, 15.0, 30.0, 40.0]),
            charge=True,
        ),
    )


def random_scenario(rng: random.Random, index: int) -> Scenario:
    """A random discharge fleet: 2–8 packs of 5–200 kWh, SOC 20–90 %, SOH 70–100 %, LFP or NMC, one
    ambient of 5–35 °C with each pack 0–6 °C above it, and one pack offline for 5–30 min within the
    first half of the time the fleet's energy above reserve would last."""
    ambient_c = rng.uniform(5.0, 35.0)
    packs = tuple(
        PackSpec(
            f"pack-{i + 1:02d}",
            default_params(
                rng.uniform(5_000.0, 200_000.0),
                soh_pct=rng.uniform(70.0, 100.0),
                chemistry=rng.choice(list(Chemistry)),
                ambient_c=ambient_c,
            ),
            soc_pct=rng.uniform(20.0, 90.0),
            temp_c=ambient_c + rng.uniform(0.0, 6.0),
        )
        for i in range(rng.randint(2, 8))
    )
    fleet = Scenario(name=f"random-{index:03d}", title=f"random fleet {index}", packs=packs)
    lasts_s = fleet.start_margin_wh / fleet.request_w * SECONDS_PER_HOUR
    dropout = Dropout(
        rng.choice(packs).node_id,
        start_s=rng.uniform(0.0, 0.5) * lasts_s,
        duration_s=rng.uniform(300.0, 1800.0),
    )
    return replace(fleet, dropouts=(dropout,))


# --- output --------------------------------------------------------------------------------------------


def _hours(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f}"


def markdown_table(result: ScenarioResult) -> str:
    scenario = result.scenario
    word = scenario.bound_word
    moved = "absorbed" if scenario.charge else "delivered"
    energy = "headroom below the ceiling" if scenario.charge else "energy above reserve"
    names = list(result.runs)
    m = {name: result.runs[name].metrics for name in names}

    def first(name: str) -> str:
        metrics = m[name]
        if metrics.first_bound_h is None:
            return "never"
        return f"{metrics.first_bound_h:.2f} ({metrics.first_bound_node})"

    rows: list[tuple[str, list[str]]] = [
        (
            f"**recovered before the first pack reached {word}** (% of {energy} at start)",
            [f"**{m[n].recovered_first_bound_pct:.1f}**" for n in names],
        ),
        (f"first pack at {word} after (h)", [first(n) for n in names]),
        (f"{moved} at the terminals by then (kWh)", [f"{m[n].terminal_first_bound_kwh:.1f}" for n in names]),
        (f"recovered when the run ended (% of {energy})", [f"{m[n].recovered_end_pct:.1f}" for n in names]),
        (f"{moved} at the terminals in the run (kWh)", [f"{m[n].terminal_end_kwh:.1f}" for n in names]),
        ("request served for (h)", [f"{m[n].served_h:.2f}" for n in names]),
        ("run ended by", [m[n].ended for n in names]),
        (
            f"SOC spread when the first pack reached {word} (%)",
            [f"{m[n].first_bound_spread_pct:.1f}" for n in names],
        ),
        ("SOC spread when the run ended (%)", [f"{m[n].final_spread_pct:.1f}" for n in names]),
        (
            f"time until SOC spread < {SPREAD_TARGET_PCT:g} % (h)",
            [_hours(m[n].spread_under_target_h) for n in names],
        ),
        ("setpoint writes per node per minute", [f"{m[n].writes_per_node_per_min:.2f}" for n in names]),
        ("sign flips per node (max)", [str(m[n].sign_flips_max_per_node) for n in names]),
        ("thermal bypass (pack-hours)", [f"{m[n].thermal_bypass_pack_h:.2f}" for n in names]),
        ("shortfall while a pack was offline (kWh)", [f"{m[n].dropout_shortfall_kwh:.2f}" for n in names]),
    ]
    direction = "charge" if scenario.charge else "discharge"
    lines = [
        f"### {scenario.title}",
        "",
        f"Request: {abs(scenario.request_w) / 1000:.2f} kW {direction} ({scenario.c_rate:g} C of "
        f"{scenario.usable_wh / 1000:.1f} kWh usable); {energy} at start: "
        f"{scenario.start_margin_wh / 1000:.2f} kWh; cycle {result.cycle_s:g} s.",
        "",
        "| metric | " + " | ".join(LABELS[n] for n in names) + " |",
        "| --- |" + " ---: |" * len(names),
        *(f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows),
    ]
    return "\n".join(lines)


def plot_scenario(result: ScenarioResult, path: Path) -> None:
    """SOC trajectories per strategy, side by side (rendered by matplotlib's Agg canvas)."""
    scenario = result.scenario
    figure = Figure(figsize=(5.0 * len(result.runs), 4.2), layout="constrained")
    axes = figure.subplots(1, len(result.runs), sharey=True, squeeze=False)[0]
    for ax, (name, run) in zip(axes, result.runs.items(), strict=True):
        for node_id, socs in run.trace.soc_pct.items():
            ax.plot(run.trace.time_h, socs, label=node_id, linewidth=1.4)
        ax.axhline(scenario.bound_pct, color="grey", linestyle="--", linewidth=1, label=scenario.bound_word)
        for drop in scenario.dropouts:
            start_h = drop.start_s / SECONDS_PER_HOUR
            ax.axvspan(start_h, start_h + drop.duration_s / SECONDS_PER_HOUR, color="red", alpha=0.12)
        metrics = run.metrics
        if metrics.first_bound_h is not None:
            ax.axvline(metrics.first_bound_h, color="black", linestyle=":", linewidth=1)
        ax.set_title(
            f"{LABELS[name]}: {metrics.recovered_first_bound_pct:.1f} % before first {scenario.bound_word}"
        )
        ax.set_xlabel("time (h)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("SOC (%)")
    axes[0].legend(fontsize="small")
    figure.suptitle(scenario.title)
    figure.savefig(path, dpi=90)


def _fleet_json(scenario: Scenario) -> dict[str, Any]:
    return {
        "name": scenario.name,
        "title": scenario.title,
        "direction": "charge" if scenario.charge else "discharge",
        "request_w": scenario.request_w,
        "usable_wh": scenario.usable_wh,
        "start_margin_wh": scenario.start_margin_wh,
        "packs": [
            {
                "node_id": pack.node_id,
                "capacity_wh": pack.params.capacity_wh,
                "soh_pct": pack.params.soh_pct,
                "soc_pct": pack.soc_pct,
                "temp_c": pack.params.ambient_c if pack.temp_c is None else pack.temp_c,
                "ambient_c": pack.params.ambient_c,
                "chemistry": str(pack.params.chemistry),
                "resistance_ohm": pack.params.resistance_ohm,
                "cooling_w_per_k": pack.params.cooling_w_per_k,
                "thermal_mass_j_per_k": pack.params.thermal_mass_j_per_k,
            }
            for pack in scenario.packs
        ],
        "dropouts": [asdict(drop) for drop in scenario.dropouts],
    }


def write_outputs(results: Sequence[ScenarioResult], out: Path) -> str:
    """Write balancing.json, balancing.md and one PNG per scenario into `out`; return the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    sections: list[str] = []
    documents: list[dict[str, Any]] = []
    methods: list[str] = []
    for result in results:
        png = f"balancing-{result.scenario.name}.png"
        plot_scenario(result, out / png)
        sections.append(f"{markdown_table(result)}\n\n![SOC trajectories]({png})")
        method = measurement(result.cycle_s, result.soc_resolution_pct)
        if method not in methods:
            methods.append(method)
        documents.append(
            {
                **_fleet_json(result.scenario),
                "cycle_s": result.cycle_s,
                "soc_resolution_pct": result.soc_resolution_pct,
                "plot": png,
                "results": {name: asdict(run.metrics) for name, run in result.runs.items()},
            }
        )
    markdown = "\n\n".join(
        [
            "# Balancing: energy recovered by socgw's balancer against the alternatives",
            f"Headline: {HEADLINE_DEFINITION}",
            *(f"How it was measured: {method}" for method in methods),
            *sections,
        ]
    )
    (out / "balancing.md").write_text(markdown + "\n", encoding="utf-8")
    document = {
        "headline_definition": HEADLINE_DEFINITION,
        "measurement": methods,
        "strategies": dict(LABELS),
        "scenarios": documents,
    }
    (out / "balancing.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return markdown


@dataclass(frozen=True)
class RandomFleetResult:
    scenario: Scenario
    metrics: Mapping[str, Metrics]  # by strategy name, each run to its end
    # socgw on the same fleet with its dropout removed: whether a miss is the dropout's doing
    ours_without_dropout_pct: float

    def headline_pct(self, strategy: str) -> float:
        return self.metrics[strategy].recovered_first_bound_pct


def random_fleets(
    count: int, seed: int, cycle_s: float, soc_resolution_pct: float = SOC_RESOLUTION_PCT
) -> list[RandomFleetResult]:
    """Every strategy on `count` random fleets, each run to its end (final spread, writes per minute)."""
    rng = random.Random(seed)
    results = []
    for index in range(count):
        scenario = random_scenario(rng, index)
        metrics = {
            name: simulate(scenario, name, cycle_s, soc_resolution_pct=soc_resolution_pct).metrics
            for name in STRATEGIES
        }
        undisturbed = simulate(
            replace(scenario, dropouts=()),
            "socgw",
            cycle_s,
            soc_resolution_pct=soc_resolution_pct,
            stop_at_first_bound=True,
        )
        results.append(RandomFleetResult(scenario, metrics, undisturbed.metrics.recovered_first_bound_pct))
    return results


RANDOM_METRICS: tuple[tuple[str, str], ...] = (
    ("recovered_first_bound_pct", "recovered before the first pack reached reserve (%)"),
    ("first_bound_spread_pct", "SOC spread when the first pack reached reserve (%)"),
    ("final_spread_pct", "SOC spread when the run ended (%)"),
    ("writes_per_node_per_min", "setpoint writes per node per minute"),
)


def distribution_table(fleets: Sequence[RandomFleetResult], seed: int) -> str:
    lines = [
        f"### {len(fleets)} random fleets (seed {seed}), every run to its end",
        "",
        "| metric | strategy | min | p10 | median | p90 | max |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, label in RANDOM_METRICS:
        for name in STRATEGIES:
            values = np.asarray([getattr(fleet.metrics[name], key) for fleet in fleets])
            cells = " | ".join(f"{v:.1f}" for v in np.percentile(values, [0.0, 10.0, 50.0, 90.0, 100.0]))
            lines.append(f"| {label} | {LABELS[name]} | {cells} |")
    misses = [fleet for fleet in fleets if fleet.headline_pct("socgw") < 99.0]
    lines += ["", f"socgw under 99 %: {len(misses)} of {len(fleets)}"]
    for fleet in misses:
        offline = fleet.metrics["socgw"].first_bound_offline
        lines.append(
            f"- {fleet.scenario.name}: {fleet.headline_pct('socgw'):.1f} %"
            + (f", {', '.join(offline)} offline when the first pack reached reserve" if offline else "")
            + f"; without its dropout {fleet.ours_without_dropout_pct:.1f} %"
        )
    return "\n".join(lines)


def random_json(fleet: RandomFleetResult) -> dict[str, Any]:
    return {
        **_fleet_json(fleet.scenario),
        "results": {name: asdict(metrics) for name, metrics in fleet.metrics.items()},
        "socgw_without_dropout_pct": fleet.ours_without_dropout_pct,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.balancing", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="output directory (default: %(default)s)"
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_CYCLE_S:g} s cycles instead of {CYCLE_S:g} s"
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=[scenario.name for scenario in scenarios()],
        help="run only this scenario (repeatable)",
    )
    parser.add_argument(
        "--soc-resolution",
        type=float,
        default=SOC_RESOLUTION_PCT,
        metavar="PCT",
        help="SOC telemetry resolution, 0 for none (default: %(default)s %%, as the shipped profiles)",
    )
    parser.add_argument(
        "--random", type=int, metavar="N", help="N random fleets: distributions of the metrics"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of --random (default: %(default)s)")
    args = parser.parse_args(argv)
    if not 0.0 <= args.soc_resolution < 10.0:
        parser.error(f"--soc-resolution must be 0 or more and below 10 %, got {args.soc_resolution}")
    cycle_s = QUICK_CYCLE_S if args.quick else CYCLE_S
    started = time.perf_counter()

    if args.random is not None:
        if args.random < 1:
            parser.error(f"--random needs at least 1 fleet, got {args.random}")
        fleets = random_fleets(args.random, args.seed, cycle_s, args.soc_resolution)
        print(distribution_table(fleets, args.seed))
        args.out.mkdir(parents=True, exist_ok=True)
        document = {
            "headline_definition": HEADLINE_DEFINITION,
            "measurement": measurement(cycle_s, args.soc_resolution),
            "seed": args.seed,
            "fleets": [random_json(fleet) for fleet in fleets],
        }
        path = args.out / "balancing-random.json"
        path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"\n({time.perf_counter() - started:.1f} s; written {path})")
        return 0

    chosen = [s for s in scenarios() if args.scenario is None or s.name in args.scenario]
    results = [run_scenario(scenario, cycle_s, args.soc_resolution) for scenario in chosen]
    print(write_outputs(results, args.out))
    print(f"\n({time.perf_counter() - started:.1f} s; results in {args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
