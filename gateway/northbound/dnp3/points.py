"""The DNP3 points of one cycle: scaled integers, quality flags, and which changes are events.

Pure: no stack, no I/O. `PointTable.changes(snapshot, ...)` returns only the points whose value or
flags changed since the previous cycle, each marked as an event or not, so the adapter hands the stack
one small update per cycle; `PointTable.node_changes(nodes, ...)` does the same for the points of nodes
whose poll answered before the cycle's snapshot, read with the latest snapshot's dispatch and
parameters. The yadnp3 binding has no per-point deadband or class (notes/dnp3.md), so both live here,
in the change tracker every protocol shares (`gateway/mapping/changes.py`): a point with class 0 never
makes an event; a point makes one when its count moved by more than its deadband since its last event,
or when its quality flags changed. The first cycle only sets the static values (a master that connects
reads them with an integrity poll), so a start-up does not flood the event buffers.

Quality (`gateway/mapping/quality.py`, docs/quality.md) becomes the flags of `FLAGS`: a stale pack's
values keep ONLINE and gain COMM_LOST (the last value read before its poll failed); an offline pack's
lose ONLINE and show COMM_LOST; a value never known is not ONLINE. An unknown value keeps its last count.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

from gateway.fleet import NodeState
from gateway.mapping.changes import Change as Seen
from gateway.mapping.changes import ChangeTracker, NodeInputs
from gateway.mapping.dnp3 import DNP3_SOURCES, INT32_MAX, INT32_MIN, PointType, ResolvedPoint
from gateway.mapping.quality import ValueQuality, describes_loss, fleet_value_quality, node_qualities
from gateway.mapping.sources import NODE_SOURCES, Value, read_fleet, read_node
from gateway.snapshot import CycleSnapshot

# DNP3 quality flags (IEEE 1815 static/event flag octet).
NOT_ONLINE = 0x00
ONLINE = 0x01
RESTART = 0x02  # what the stack shows for a point nothing has written yet
COMM_LOST = 0x04
OVERRANGE = 0x20  # analogs: the value does not fit the 32-bit count (clamped)
FLAGS: Mapping[ValueQuality, int] = {
    ValueQuality.GOOD: ONLINE,
    ValueQuality.STALE: ONLINE | COMM_LOST,
    ValueQuality.OFFLINE: COMM_LOST,
    ValueQuality.MISSING: NOT_ONLINE,
}

# One changed point: (type, index, value, flags, is_event). Tuples, not objects: at 200 packs a cycle
# can carry a thousand of them and this runs on the control loop.
Change = tuple[PointType, int, int | bool, int, bool]
NodeReader = Callable[[CycleSnapshot, NodeState], Value]
_NEVER = object()  # a reading no source returns


class _Slot:
    """One point's definition and what was last read for it."""

    __slots__ = (
        "binary",
        "events",
        "index",
        "loss",
        "position",
        "quality",
        "rated",
        "raw",
        "scale",
        "source",
        "type",
        "value",
    )

    def __init__(self, point: ResolvedPoint, position: int) -> None:
        spec = point.spec
        self.type = point.type
        self.index = point.index
        self.position = position  # in the change tracker
        self.source = spec.source
        self.loss = describes_loss(spec.source)  # good even when its node is stale or offline
        self.binary = not point.type.analog
        self.scale = spec.scale
        self.rated = spec.rated_permille
        self.events = spec.event_class > 0
        self.value: int | bool | None = None  # last published count/state (None: never)
        self.raw: object = _NEVER  # the source's value last cycle, and its quality
        self.quality: ValueQuality | None = None


class PointTable:
    """The points of a map expanded for a fleet, and the state needed to publish only what changed."""

    def __init__(self, points: Sequence[ResolvedPoint]) -> None:
        self._fleet: list[_Slot] = []
        self._adapter: list[_Slot] = []
        self._nodes: dict[str, list[tuple[_Slot, NodeReader]]] = {}
        for position, point in enumerate(points):
            slot = _Slot(point, position)
            if point.node_id is not None:
                reader = NODE_SOURCES[point.spec.source].read
                self._nodes.setdefault(point.node_id, []).append((slot, reader))
            elif point.spec.source in DNP3_SOURCES:
                self._adapter.append(slot)
            else:
                self._fleet.append(slot)
        self._tracker = ChangeTracker([point.spec.deadband for point in points])
        self._first = True
        self._inputs = NodeInputs()

    def changes(
        self,
        snapshot: CycleSnapshot,
        adapter_values: Mapping[str, Value],
        rated_power_w: float | None,
    ) -> list[Change]:
        """The points that changed since the last call (all of them the first time, as non-events).

        `adapter_values` gives the dnp3.* quantities; `rated_power_w` scales the rated_permille
        points (None or 0: unknown, those points go "not online")."""
        first, self._first = self._first, False
        # The readings first, then one encode loop: no function call per point (5000 at 200 packs).
        readings: list[tuple[_Slot, Value, ValueQuality]] = []
        fleet = snapshot.fleet
        for slot in self._fleet:
            raw = read_fleet(slot.source, snapshot)
            readings.append((slot, raw, fleet_value_quality(fleet, raw)))
        for slot in self._adapter:
            raw = adapter_values.get(slot.source)
            readings.append((slot, raw, ValueQuality.GOOD if raw is not None else ValueQuality.MISSING))
        self._inputs.context((snapshot.params, snapshot.command, rated_power_w))
        self._read_nodes(snapshot, fleet.nodes, readings)
        return self._encode(readings, rated_power_w, first)

    def node_changes(
        self, snapshot: CycleSnapshot, nodes: Sequence[NodeState], rated_power_w: float | None
    ) -> list[Change]:
        """The points of `nodes` that changed, read with `snapshot`, the latest one `changes` was given
        (its dispatch and parameters stay in force until the next)."""
        readings: list[tuple[_Slot, Value, ValueQuality]] = []
        self._read_nodes(snapshot, nodes, readings)
        return self._encode(readings, rated_power_w, False)

    def _read_nodes(
        self,
        snapshot: CycleSnapshot,
        nodes: Sequence[NodeState],
        readings: list[tuple[_Slot, Value, ValueQuality]],
    ) -> None:
        # A node whose inputs equal those it was last read with has the same values (NodeInputs), and
        # its points are not read again. At rest that is most nodes, most cycles.
        good = ValueQuality.GOOD
        seen = self._inputs
        for node in nodes:
            slots = self._nodes.get(node.node_id)
            if not slots:
                continue
            inputs = (node, snapshot.node_dispatch(node.node_id))
            if not seen.changed(node.node_id, inputs):
                continue
            seen.record(node.node_id, inputs)
            known, unknown = node_qualities(node)
            if node.online:
                # The hot path (5000 points a cycle at 200 packs, most of them unchanged): read_node() adds
                # nothing for a node that answers but a lookup and a check, so the bound readers are
                # called directly, and an unchanged reading is dropped here rather than in _encode.
                for slot, read in slots:
                    raw = read(snapshot, node)
                    quality = unknown if raw is None else good if slot.loss else known
                    if raw != slot.raw or quality is not slot.quality or slot.rated:
                        readings.append((slot, raw, quality))
            else:
                for slot, _ in slots:
                    raw = read_node(slot.source, snapshot, node)
                    readings.append((slot, raw, unknown if raw is None else good if slot.loss else known))

    def _encode(
        self,
        readings: list[tuple[_Slot, Value, ValueQuality]],
        rated_power_w: float | None,
        first: bool,
    ) -> list[Change]:
        """Counts and flags for each reading; the ones that changed, marked as events or not."""
        out: list[Change] = []
        observe = self._tracker.observe
        for slot, raw, quality in readings:
            if raw == slot.raw and quality is slot.quality and not slot.rated:
                continue  # the same reading as last cycle: the same count and flags (most points)
            slot.raw, slot.quality = raw, quality
            value: int | bool
            flags = FLAGS[quality]
            if raw is None:
                value = _last(slot)
            elif slot.binary:
                value = bool(raw)
            else:
                if slot.rated:
                    count = raw * 1000.0 / rated_power_w if rated_power_w else math.nan
                else:
                    count = raw / slot.scale
                # One chained comparison on the common path; NaN fails it as well as out-of-range values.
                if INT32_MIN <= count <= INT32_MAX:
                    value = round(count)
                elif count > INT32_MAX:
                    value, flags = INT32_MAX, flags | OVERRANGE
                elif count < INT32_MIN:
                    value, flags = INT32_MIN, flags | OVERRANGE
                else:
                    value, flags = _last(slot), FLAGS[ValueQuality.MISSING]
            seen = observe(slot.position, value, flags)
            if seen is Seen.UNCHANGED:
                continue
            slot.value = value
            out.append(
                (slot.type, slot.index, value, flags, seen is Seen.REPORT and slot.events and not first)
            )
        return out


def _last(slot: _Slot) -> int | bool:
    if slot.value is not None:
        return slot.value
    return False if slot.binary else 0
