"""How good a published value is, in four kinds every protocol maps to its own flags.

    GOOD     read in the latest poll (or computed from such readings)
    STALE    the pack's latest poll failed; the value is the last one read (fleet.Quality.STALE), still
             used by the balancer within its tolerance
    OFFLINE  the pack gives no usable telemetry (fleet.Quality.FAILED, or its SOC is unknown); for a
             fleet quantity: no pack online
    MISSING  the value was never known: the pack answers but its profile lacks the quantity, a quantity
             that cannot be computed (a scale whose rated power is not known yet), or nothing yet

Each adapter owns the table from kind to its protocol's flags (DNP3: `northbound/dnp3/points.py`,
IEC 61850: `northbound/iec61850/updater.py`); docs/quality.md has both side by side, so a stale pack
looks the same on every protocol.
"""

from __future__ import annotations

import enum

from gateway.fleet import FleetState, NodeState
from gateway.fleet import Quality as NodeQuality
from gateway.mapping.sources import LOSS_INDICATORS, Value


class ValueQuality(enum.Enum):
    GOOD = "good"
    STALE = "stale"
    OFFLINE = "offline"
    MISSING = "missing"


def node_value_quality(node: NodeState, source: str, value: Value) -> ValueQuality:
    """The quality of node quantity `source` of `node`, whose value (`read_node`) is `value`."""
    known, unknown = node_qualities(node)
    if value is None:
        return unknown
    return ValueQuality.GOOD if describes_loss(source) else known


def node_qualities(node: NodeState) -> tuple[ValueQuality, ValueQuality]:
    """The quality of a known and of an unknown value of `node` (for publishers that read many
    quantities of one node: work it out once per node)."""
    known = ValueQuality.STALE if node.quality is NodeQuality.STALE else ValueQuality.GOOD
    return known, ValueQuality.MISSING if node.online else ValueQuality.OFFLINE


def describes_loss(source: str) -> bool:
    """Whether node quantity `source` describes a loss of the node (online, comm_failed, mode): such
    a value is good even when the node is stale or offline, because it is current news about it."""
    return source in LOSS_INDICATORS


def fleet_value_quality(fleet: FleetState, value: Value) -> ValueQuality:
    """The quality of a fleet quantity whose value (`read_fleet`) is `value`."""
    if value is not None:
        return ValueQuality.GOOD
    return ValueQuality.MISSING if fleet.online_nodes else ValueQuality.OFFLINE
