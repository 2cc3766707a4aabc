"""The fleet model: one immutable snapshot of every pack per control cycle, with aggregates.

Pure: no I/O, no clock. The southbound adapter decodes registers into engineering values and calls
`node_from_values`; the engine gathers the nodes into a `FleetState` stamped with the cycle time; the
balancer and the northbound adapters read it.

Sign convention: positive power and current = discharge. Limits (`charge_limit_w`,
`discharge_limit_w`) are magnitudes (>= 0 when the device is sane).

"Online" here means "the gateway has a reading it may use": quality is not `failed` and the state of
charge is known. The balancer applies its own stricter rule on top (telemetry age, fault state).
"""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gateway.profiles.vocabulary import CANONICAL_STATES, FLEET_FEEDS

STATE_LABELS = frozenset(CANONICAL_STATES)


class Quality(enum.StrEnum):
    """How fresh a node's telemetry is."""

    GOOD = "good"  # read in the latest poll
    STALE = "stale"  # the latest poll failed; values are from an earlier one (see `age_s`)
    FAILED = "failed"  # no usable reading (never read, or the adapter gave up on the old one)


@dataclass(frozen=True)
class NodeState:
    """One pack as seen in one cycle. Numeric fields are None when the device does not report them."""

    node_id: str
    quality: Quality = Quality.GOOD
    error_code: str | None = None  # the southbound adapter's reason for stale/failed, e.g. "E_TIMEOUT"
    age_s: float = 0.0  # age of the values at the snapshot time
    soc_pct: float | None = None
    soh_pct: float | None = None
    capacity_wh: float | None = None  # nameplate
    voltage_v: float | None = None
    current_a: float | None = None
    power_w: float | None = None
    temp_c: float | None = None
    temp_max_c: float | None = None
    temp_min_c: float | None = None
    cell_voltage_min_v: float | None = None
    cell_voltage_max_v: float | None = None
    charge_limit_w: float | None = None
    discharge_limit_w: float | None = None
    setpoint_w: float | None = None  # as read back from the device
    enabled: bool | None = None
    state: str | None = None  # canonical label, see STATE_LABELS
    alarms: tuple[str, ...] = ()  # the device's own alarm labels

    def __post_init__(self) -> None:
        if not self.node_id:
            raise ValueError("a node needs a non-empty node_id")

    @property
    def usable_energy_wh(self) -> float | None:
        """Nameplate × SOH (SOH missing counts as 100 %); None when the capacity is unknown."""
        if self.capacity_wh is None:
            return None
        soh = 100.0 if self.soh_pct is None else self.soh_pct
        return max(0.0, self.capacity_wh) * max(0.0, soh) / 100.0

    @property
    def online(self) -> bool:
        return self.quality is not Quality.FAILED and self.soc_pct is not None

    @property
    def hottest_c(self) -> float | None:
        """The temperature that matters for thermal decisions: hottest cell if reported, else the pack."""
        return self.temp_max_c if self.temp_max_c is not None else self.temp_c


@dataclass(frozen=True)
class FleetState:
    """All nodes at one cycle. Aggregates cover online nodes only."""

    nodes: tuple[NodeState, ...]
    timestamp_s: float

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for node in self.nodes:
            if node.node_id in seen:
                raise ValueError(f"node id {node.node_id!r} appears twice; node ids must be unique")
            seen.add(node.node_id)

    @functools.cached_property
    def _by_id(self) -> dict[str, NodeState]:
        return {node.node_id: node for node in self.nodes}

    def node(self, node_id: str) -> NodeState:
        """The node called `node_id`; KeyError naming the known ids otherwise."""
        try:
            return self._by_id[node_id]
        except KeyError:
            raise KeyError(f"no node {node_id!r} in the fleet (known: {', '.join(self._by_id)})") from None

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._by_id

    @functools.cached_property
    def online_nodes(self) -> tuple[NodeState, ...]:
        # Cached: every aggregate and every publisher asks, many times a cycle; the snapshot never changes.
        return tuple(node for node in self.nodes if node.online)

    @property
    def counts_by_quality(self) -> dict[Quality, int]:
        counts = dict.fromkeys(Quality, 0)
        for node in self.nodes:
            counts[node.quality] += 1
        return counts

    @property
    def mean_soc_pct(self) -> float | None:
        """Energy-weighted mean SOC: the fleet's stored energy over its usable energy.

        Nodes without a known capacity are left out unless no node reports one (then a plain mean).
        None when no node is online.
        """
        socs = [(node.soc_pct, node.usable_energy_wh) for node in self.online_nodes]
        weighted = [(soc, energy) for soc, energy in socs if soc is not None and energy is not None]
        total_energy = sum(energy for _, energy in weighted)
        if total_energy > 0.0:
            return sum(soc * energy for soc, energy in weighted) / total_energy
        plain = [soc for soc, _ in socs if soc is not None]
        return sum(plain) / len(plain) if plain else None

    @property
    def soc_spread_pct(self) -> float | None:
        """Max − min SOC over online nodes; None when no node is online."""
        socs = [node.soc_pct for node in self.online_nodes if node.soc_pct is not None]
        return max(socs) - min(socs) if socs else None

    @property
    def stored_energy_wh(self) -> float:
        return self.energy_above_reserve_wh(0.0)

    def energy_above_reserve_wh(self, reserve_pct: float) -> float:
        """Energy the online nodes can deliver before every one reaches `reserve_pct`."""
        total = 0.0
        for node in self.online_nodes:
            energy = node.usable_energy_wh
            if energy is not None and node.soc_pct is not None:
                total += energy * max(0.0, node.soc_pct - reserve_pct) / 100.0
        return total

    @property
    def available_discharge_w(self) -> float:
        """Sum of online nodes' discharge limits (unreported limits count as 0)."""
        return sum(abs(node.discharge_limit_w or 0.0) for node in self.online_nodes)

    @property
    def available_charge_w(self) -> float:
        """Sum of online nodes' charge limits (unreported limits count as 0)."""
        return sum(abs(node.charge_limit_w or 0.0) for node in self.online_nodes)

    @property
    def total_power_w(self) -> float:
        """Measured power of the online nodes (+ = discharge)."""
        return sum(node.power_w or 0.0 for node in self.online_nodes)


def highest_discharge_limits(seen: Mapping[str, float], fleet: FleetState) -> dict[str, float]:
    """Each node's highest discharge limit so far: `seen` updated with this fleet's online nodes. A
    derated pack (hot, near reserve) reports less than it can do; the highest value seen is its rating."""
    highest = dict(seen)
    for node in fleet.online_nodes:
        limit = node.discharge_limit_w
        if limit is not None and limit > highest.get(node.node_id, 0.0):
            highest[node.node_id] = limit
    return highest


def learned_rated_power_w(highest: Mapping[str, float]) -> float | None:
    """The fleet's rated power (100 % of a request in % of it): the sum of each node's highest
    discharge limit; None until a node has reported one."""
    return sum(highest.values()) or None


class _FromValues(enum.Enum):
    """The state comes from the values (node_from_values' default)."""

    FROM_VALUES = enum.auto()


_FROM_VALUES = _FromValues.FROM_VALUES

# Vocabulary points copied one-to-one into NodeState's float fields: every point the vocabulary says
# feeds the fleet, but the three that need interpreting (`enable` is a number or a word, `state` a
# canonical label, `alarms` arrive as labels).
_NUMBER_FEEDS: Mapping[str, str] = {
    point: field for point, field in FLEET_FEEDS.items() if point not in {"enable", "state", "alarms"}
}
_NUMBER_PAIRS = tuple(_NUMBER_FEEDS.items())
_TRUE_WORDS = frozenset({"1", "true", "on", "enabled", "enable", "yes"})
_FALSE_WORDS = frozenset({"0", "false", "off", "disabled", "disable", "no"})


def node_from_values(
    node_id: str,
    values: Mapping[str, float | int | str | None],
    *,
    quality: Quality = Quality.GOOD,
    age_s: float = 0.0,
    error_code: str | None = None,
    alarms: Sequence[str] = (),
    state: str | _FromValues | None = _FROM_VALUES,
) -> NodeState:
    """Build a NodeState from decoded engineering values keyed by vocabulary point name.

    Points not in the vocabulary subset NodeState knows (heartbeat, firmware, x_*, ...) are ignored;
    missing points, None and non-finite numbers become None. `enable` may be a number (non-zero = on) or
    a word; `state` must already be the canonical label (resolve enums with `codec.label_of` first), and
    device alarms are passed as labels (`codec.active_labels`). The `state` argument, when given, is used
    instead of the `state` value. Raises ValueError naming the node and the point when a value has the
    wrong kind.
    """
    if not node_id:
        raise ValueError("a node needs a non-empty node_id")
    # Runs for every node every cycle: floats (what the codec gives) are taken as they are, the rest
    # goes through the checks.
    fields: dict[str, object] = {}
    isfinite = math.isfinite
    for point, field in _NUMBER_PAIRS:
        value = values.get(point)
        if value is None:
            fields[field] = None
        elif value.__class__ is float:
            fields[field] = value if isfinite(value) else None
        else:
            fields[field] = _number(node_id, point, value)
    fields["node_id"] = node_id
    fields["quality"] = quality
    fields["error_code"] = error_code
    fields["age_s"] = age_s
    fields["enabled"] = _enabled(node_id, values.get("enable"))
    fields["state"] = _state(node_id, values.get("state") if isinstance(state, _FromValues) else state)
    fields["alarms"] = alarms if alarms.__class__ is tuple else tuple(alarms)
    node = object.__new__(NodeState)
    # The frozen dataclass's __init__ sets its 21 fields one object.__setattr__ at a time (~2.7 µs, per
    # node per cycle); every field is given here, checked above as __init__ and __post_init__ would.
    node.__dict__.update(fields)
    return node


def _number(node_id: str, name: str, value: float | int | str | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise ValueError(
            f"node {node_id!r}: point {name!r} decoded to text {value!r}; it must be numeric "
            "(check the point's type in the profile)"
        )
    number = float(value)
    return number if math.isfinite(number) else None


def _enabled(node_id: str, value: float | int | str | None) -> bool | None:
    if value is None:
        return None
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
        raise ValueError(
            f"node {node_id!r}: point 'enable' has label {value!r}; use one of "
            f"{sorted(_TRUE_WORDS)} or {sorted(_FALSE_WORDS)} in the profile's labels"
        )
    return value != 0


def _state(node_id: str, value: float | int | str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(
            f"node {node_id!r}: point 'state' is the raw value {value!r}; resolve it to a label first "
            "(codec.label_of), and give the profile a label for it"
        )
    label = value.strip().lower()
    if label not in STATE_LABELS:
        raise ValueError(
            f"node {node_id!r}: point 'state' has label {value!r}, not one of the canonical "
            f"{sorted(STATE_LABELS)}; map the device's value to one of them in the profile's labels"
        )
    return label
