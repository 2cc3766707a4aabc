"""One cycle as the web view shows it: a JSON document built from the snapshot through the named
quantities (`gateway.mapping.sources`), so the browser shows the numbers SCADA sees."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.mapping.sources import read_fleet, read_node
from gateway.northbound.web.history import History
from gateway.snapshot import CycleSnapshot

FLEET_QUANTITIES = (
    "fleet.request_w",
    "fleet.served_w",
    "fleet.unserved_w",
    "fleet.power_w",
    "fleet.mean_soc_pct",
    "fleet.soc_spread_pct",
    "fleet.stored_energy_wh",
    "fleet.nodes_online",
    "fleet.nodes_total",
)
NODE_QUANTITIES = ("node.soc_pct", "node.power_w", "node.setpoint_w", "node.temp_c")


def _number(value: float | bool | None) -> float | None:
    """Rounded to the milliunit: the view shows no finer, and float noise (-3.6e-12 W) goes."""
    if value is None or isinstance(value, bool):
        return None
    return round(float(value), 3) + 0.0


def state_document(
    snapshot: CycleSnapshot, history: History, profiles: Mapping[str, str], site: str
) -> dict[str, Any]:
    nodes = []
    for node in snapshot.fleet.nodes:
        decision = snapshot.node_dispatch(node.node_id)
        row: dict[str, Any] = {
            "id": node.node_id,
            "profile": profiles.get(node.node_id, ""),
            "quality": str(node.quality),
            "mode": str(decision.mode) if decision is not None else None,
            "alarms": [
                *(decision.alarms if decision is not None else ()),
                *([node.error_code] if node.error_code else []),
            ],
        }
        for name in NODE_QUANTITIES:
            row[name.removeprefix("node.")] = _number(read_node(name, snapshot, node))
        nodes.append(row)
    latest = history.samples[-1] if history.samples else None
    return {
        "site": site,
        "cycle": snapshot.index,
        "time": snapshot.wall_time.timestamp(),
        "fleet": {
            name.removeprefix("fleet."): _number(read_fleet(name, snapshot)) for name in FLEET_QUANTITIES
        },
        "alarms": list(snapshot.dispatch.alarms),
        "nodes": nodes,
        "timing": {
            "cycle_ms": round(history.cycle_s * 1000.0, 3),
            "interval_p50_ms": _number(history.interval_quantile_ms(0.5)),
            "interval_p99_ms": _number(history.interval_quantile_ms(0.99)),
            "late_cycles": history.late_cycles,
        },
        "events": [event.as_json() for event in reversed(history.events)],
        "sample": None if latest is None else {"time": latest[0], "soc_pct": latest[1]},
    }
