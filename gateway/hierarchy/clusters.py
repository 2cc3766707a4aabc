"""A worker's cluster as the head sees it: one big pack whose energy-proportional share is exact.

The balancer gives a discharging pack a share ∝ E·(soc − reserve) and a charging one ∝ E·(ceiling − soc).
Both are sums over packs, so a cluster that reports A = Σ E_i·(soc_i − r)⁺ (its energy above reserve) and
H = Σ E_i·(c − soc_i)⁺ (its energy below the ceiling) is one pack with

    E = 100·(A + H)/(c − r)   and   soc = r + 100·A/E,

for which E·(soc − r)/100 = A and E·(c − soc)/100 = H exactly, in either direction. The head's balancer
splits the site request over such packs, each worker splits its share over its own packs by the same
rule, and where no limit binds every pack gets what one flat balancer over the whole site would give
(`tests/hierarchy/test_clusters.py` checks it against `balancer.dispatch`). When every pack lies between
reserve and ceiling, E is the cluster's usable energy and soc its energy-weighted mean SOC.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.balancer import BalancerParams
from gateway.fleet import FleetState, NodeState, Quality
from gateway.mapping.sources import energy_below_ceiling_wh

__all__ = ["ClusterSummary", "cluster_node", "metric_number", "summarize"]


@dataclass(frozen=True)
class ClusterSummary:
    """What a worker publishes of its cluster (its node metrics), as the head reads them."""

    energy_above_reserve_wh: float
    energy_below_ceiling_wh: float
    available_charge_w: float
    available_discharge_w: float
    packs_online: int
    packs_total: int
    mean_soc_pct: float | None = None
    soc_spread_pct: float | None = None
    power_w: float | None = None
    served_w: float | None = None

    @classmethod
    def from_metrics(cls, metrics: Mapping[str, object]) -> ClusterSummary | None:
        """From a worker's node metrics by name (NBIRTH, updated by NDATA); None while one the head
        needs is missing, null or not finite (a worker of an older version, or no pack online yet)."""
        needed = (
            "energy_above_reserve_wh",
            "energy_below_ceiling_wh",
            "available_charge_w",
            "available_discharge_w",
            "nodes_online",
            "nodes_total",
        )
        values = [metric_number(metrics.get(name)) for name in needed]
        if any(value is None for value in values):
            return None
        above, below, charge, discharge, online, total = (float(v or 0.0) for v in values)
        return cls(
            energy_above_reserve_wh=above,
            energy_below_ceiling_wh=below,
            available_charge_w=charge,
            available_discharge_w=discharge,
            packs_online=int(online),
            packs_total=int(total),
            mean_soc_pct=metric_number(metrics.get("mean_soc_pct")),
            soc_spread_pct=metric_number(metrics.get("soc_spread_pct")),
            power_w=metric_number(metrics.get("power_w")),
            served_w=metric_number(metrics.get("served_w")),
        )


def metric_number(value: object) -> float | None:
    """A metric's value as a number; None when it is not a finite one (null, a boolean, a string, NaN
    or ±inf from a faulty or forged message: unknown, never a number to dispatch or serve with)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def summarize(fleet: FleetState, params: BalancerParams, served_w: float | None = None) -> ClusterSummary:
    """A worker's summary of its fleet (what its node metrics carry)."""
    return ClusterSummary(
        energy_above_reserve_wh=fleet.energy_above_reserve_wh(params.reserve_pct),
        energy_below_ceiling_wh=energy_below_ceiling_wh(fleet, params.ceiling_pct),
        available_charge_w=fleet.available_charge_w,
        available_discharge_w=fleet.available_discharge_w,
        packs_online=len(fleet.online_nodes),
        packs_total=len(fleet.nodes),
        mean_soc_pct=fleet.mean_soc_pct,
        soc_spread_pct=fleet.soc_spread_pct,
        power_w=fleet.total_power_w,
        served_w=served_w,
    )


def cluster_node(
    cluster_id: str, summary: ClusterSummary | None, params: BalancerParams, *, error_code: str | None = None
) -> NodeState:
    """The cluster as one pack for the head's balancer (module docstring); failed, with `error_code`,
    when there is no summary or no pack online. `params` are the head's reserve and ceiling."""
    span_pct = params.ceiling_pct - params.reserve_pct
    if summary is None or summary.packs_online == 0:
        return NodeState(cluster_id, quality=Quality.FAILED, error_code=error_code or "E_NO_PACK_ONLINE")
    above = max(0.0, summary.energy_above_reserve_wh)
    below = max(0.0, summary.energy_below_ceiling_wh)
    energy_wh = 100.0 * (above + below) / span_pct
    soc_pct = params.reserve_pct + 100.0 * above / energy_wh if energy_wh > 0.0 else None
    return NodeState(
        cluster_id,
        capacity_wh=energy_wh if energy_wh > 0.0 else None,
        soc_pct=soc_pct,
        power_w=summary.power_w,
        setpoint_w=summary.served_w,
        charge_limit_w=max(0.0, summary.available_charge_w),
        discharge_limit_w=max(0.0, summary.available_discharge_w),
    )
