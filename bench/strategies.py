"""Balancing strategies to compare socgw's rule against, with the call shape of `gateway.balancer.dispatch`.

Each runs through the product's `dispatch` with only the share rule swapped, so reserve, ceiling, limits,
water-filling, thermal bypass, offline handling and smoothing are identical: a scenario run measures the
split itself, not a difference in safety rules.

- `socgw`: the product rule, discharge ∝ energy above reserve, charge ∝ headroom in Wh.
- `equal_split`: the request divided equally, each share clamped to its node's limit, excess to the others.
- `soc_proportional`: discharge ∝ SOC %, charge ∝ 100 − SOC % (the common industry rule, as in
  OpenEMS-style clusters); it ignores capacity, reserve and ceiling when splitting.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from gateway.balancer import (
    BalancerMemory,
    BalancerParams,
    Dispatch,
    SiteCommand,
    dispatch,
    equal_share_weight,
)
from gateway.fleet import FleetState

Strategy = Callable[[FleetState, SiteCommand, BalancerParams, BalancerMemory | None, float], Dispatch]


def _soc_weight(energy_wh: float, soc_pct: float, bound_pct: float, charging: bool) -> float:
    return 100.0 - soc_pct if charging else soc_pct


def equal_split(
    fleet: FleetState,
    command: SiteCommand,
    params: BalancerParams,
    memory: BalancerMemory | None,
    now_s: float,
) -> Dispatch:
    return dispatch(fleet, command, params, memory, now_s, share_weight=equal_share_weight)


def soc_proportional(
    fleet: FleetState,
    command: SiteCommand,
    params: BalancerParams,
    memory: BalancerMemory | None,
    now_s: float,
) -> Dispatch:
    return dispatch(fleet, command, params, memory, now_s, share_weight=_soc_weight)


STRATEGIES: Mapping[str, Strategy] = {
    "socgw": dispatch,
    "equal_split": equal_split,
    "soc_proportional": soc_proportional,
}
