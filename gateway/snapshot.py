"""What one control cycle saw and decided: the engine hands it to every northbound publisher."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gateway.balancer import BalancerParams, Dispatch, NodeDispatch, SiteCommand
from gateway.fleet import FleetState


@dataclass(frozen=True)
class CycleAccounts:
    """What the engine has counted up to this cycle, for whoever shows it (`/metrics`, the status)."""

    overruns: int = 0  # cycles that ended past their deadline, before this one
    # A cycle is published before its writes go out, so these hold this cycle's poll and dispatch, and
    # the write and publish steps and the setpoint writes per node up to the cycle before.
    steps_ms: Mapping[str, float] = field(default_factory=dict)
    writes: Mapping[str, int] = field(default_factory=dict)
    # Connections by outcome at each adapter process's front door since start, by section (added by the
    # adapters' supervisor, which holds them): what the web view's /metrics shows beside its own.
    front_door: Mapping[str, Mapping[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class CycleSnapshot:
    index: int
    wall_time: datetime
    fleet: FleetState
    command: SiteCommand
    dispatch: Dispatch
    params: BalancerParams
    # The fleet's rated power learned from the packs (`fleet.learned_rated_power_w`); an adapter with a
    # configured rated power uses that instead (`rated_power_w`).
    learned_rated_power_w: float | None = None
    charge_discharge_enabled: bool = True  # the AN2018 mode switch in force (SiteCommandState)
    accounts: CycleAccounts = CycleAccounts()
    _by_node: Mapping[str, NodeDispatch] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Publishers look a node's decision up once per published point: index it once per cycle.
        object.__setattr__(self, "_by_node", {node.node_id: node for node in self.dispatch.nodes})

    def rated_power_w(self, configured: float | None = None) -> float | None:
        """The rated power behind requests in % of it: `configured` when given, else the learned one."""
        return configured if configured is not None else self.learned_rated_power_w

    def node_dispatch(self, node_id: str) -> NodeDispatch | None:
        return self._by_node.get(node_id)


def status_rows(snapshot: CycleSnapshot, writes: Mapping[str, int]) -> list[dict[str, Any]]:
    """One row per node of the snapshot's fleet, as `socgw status` and the live view show it."""
    rows = []
    for state in snapshot.fleet.nodes:
        decision = snapshot.node_dispatch(state.node_id)
        rows.append(
            {
                "id": state.node_id,
                "quality": str(state.quality),
                "error": state.error_code,
                "soc_pct": state.soc_pct,
                "power_w": state.power_w,
                "temp_c": state.temp_c,
                "setpoint_w": None if decision is None else decision.setpoint_w,
                "mode": None if decision is None else str(decision.mode),
                "alarms": [] if decision is None else list(decision.alarms),
                "writes": writes.get(state.node_id, 0),
            }
        )
    return rows
