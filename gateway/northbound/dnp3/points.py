"""The DNP3 points of one cycle: scaled integers, quality flags, and which changes are events.

Pure: no stack, no I/O. `PointTable.changes(snapshot, ...)` returns only the points whose value or
flags changed since the previous cycle, each marked as an event or not, so the adapter hands the stack
one small update per cycle. The yadnp3 binding has no per-point deadband or class (notes/dnp3.md), so
both live here: a point with class 0 never makes an event; an analog makes one when its count moved by
more than its deadband since its last event, or when its quality flags changed. The first cycle only
sets the static values (a master that connects reads them with an integrity poll), so a start-up does
not flood the event buffers.

Unknown values (a source returned None) keep their last count and lose the ONLINE flag: COMM_LOST when
the node (or, for fleet points, every node) does not answer, plain "not online" when the node answers
but lacks the quantity (its profile has no such register).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping, Sequence

from gateway.balancer import NodeDispatch
from gateway.fleet import FleetState, NodeState
from gateway.mapping.dnp3 import DNP3_SOURCES, INT32_MAX, INT32_MIN, PointType, ResolvedPoint
from gateway.mapping.sources import NODE_SOURCES, Value, read_fleet, read_node
from gateway.snapshot import CycleSnapshot

# DNP3 quality flags (IEEE 1815 static/event flag octet).
NOT_ONLINE = 0x00
ONLINE = 0x01
RESTART = 0x02  # what the stack shows for a point nothing has written yet
COMM_LOST = 0x04
OVERRANGE = 0x20  # analogs: the value does not fit the 32-bit count (clamped)

# One changed point: (type, index, value, flags, is_event). Tuples, not objects: at 200 packs a cycle
# can carry a thousand of them and this runs on the control loop.
Change = tuple[PointType, int, int | bool, int, bool]
NodeReader = Callable[[CycleSnapshot, NodeState], Value]
_NEVER = object()  # a reading no source returns


class _FleetView(FleetState):
    """The same fleet, with the list of online nodes computed once: FleetState recomputes it on every
    access, and the fleet quantities of one cycle ask for it some twenty times."""

    @functools.cached_property
    def online_nodes(self) -> tuple[NodeState, ...]:
        return tuple(node for node in self.nodes if node.online)


class _Slot:
    """One point's definition and what was last published for it."""

    __slots__ = (
        "binary",
        "deadband",
        "events",
        "flags",
        "index",
        "rated",
        "raw",
        "reported",
        "scale",
        "source",
        "type",
        "unknown",
        "value",
    )

    def __init__(self, point: ResolvedPoint) -> None:
        spec = point.spec
        self.type = point.type
        self.index = point.index
        self.source = spec.source
        self.binary = not point.type.analog
        self.scale = spec.scale
        self.rated = spec.rated_permille
        self.deadband = spec.deadband
        self.events = spec.event_class > 0
        self.value: int | bool | None = None  # last published count/state (None: never)
        self.flags = RESTART
        self.reported: int | bool = 0  # count of the last event (the deadband's reference)
        self.raw: object = _NEVER  # the source's value last cycle, and the flags it would have had if None
        self.unknown = NOT_ONLINE


class PointTable:
    """The points of a map expanded for a fleet, and the state needed to publish only what changed."""

    def __init__(self, points: Sequence[ResolvedPoint]) -> None:
        self._fleet: list[_Slot] = []
        self._adapter: list[_Slot] = []
        self._nodes: dict[str, list[tuple[_Slot, NodeReader]]] = {}
        for point in points:
            slot = _Slot(point)
            if point.node_id is not None:
                reader = NODE_SOURCES[point.spec.source].read
                self._nodes.setdefault(point.node_id, []).append((slot, reader))
            elif point.spec.source in DNP3_SOURCES:
                self._adapter.append(slot)
            else:
                self._fleet.append(slot)
        self._first = True
        self._context: tuple[object, ...] = ()
        self._inputs: dict[str, tuple[NodeState, NodeDispatch | None]] = {}

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
        snapshot = dataclasses.replace(
            snapshot, fleet=_FleetView(snapshot.fleet.nodes, snapshot.fleet.timestamp_s)
        )
        # The readings first, then one encode loop: no function call per point (5000 at 200 packs).
        readings: list[tuple[_Slot, Value, int]] = []
        fleet_unknown = NOT_ONLINE if snapshot.fleet.online_nodes else COMM_LOST
        readings.extend((slot, read_fleet(slot.source, snapshot), fleet_unknown) for slot in self._fleet)
        readings.extend((slot, adapter_values.get(slot.source), NOT_ONLINE) for slot in self._adapter)
        # A node quantity is a function of the node, its dispatch decision and the site's parameters
        # and command (tests/northbound/dnp3/test_points.py holds every NODE_SOURCES entry to that):
        # a node whose inputs equal last cycle's has the same values, and its points are not read
        # again. At rest that is most nodes, most cycles.
        context = (snapshot.params, snapshot.command, rated_power_w)
        same_context, self._context = context == self._context, context
        for node in snapshot.fleet.nodes:
            slots = self._nodes.get(node.node_id)
            if not slots:
                continue
            inputs = (node, snapshot.node_dispatch(node.node_id))
            if same_context and inputs == self._inputs.get(node.node_id):
                continue
            self._inputs[node.node_id] = inputs
            if node.online:
                # The hot path (5000 points a cycle at 200 packs, most of them unchanged): read_node() adds
                # nothing for a node that answers but a lookup and a check, so the bound readers are
                # called directly, and an unchanged reading is dropped here rather than in _encode.
                for slot, read in slots:
                    raw = read(snapshot, node)
                    if raw != slot.raw or slot.unknown != NOT_ONLINE or slot.rated:
                        readings.append((slot, raw, NOT_ONLINE))
            else:
                readings.extend(
                    (slot, read_node(slot.source, snapshot, node), COMM_LOST) for slot, _ in slots
                )
        return _encode(readings, rated_power_w, first)


def _encode(
    readings: list[tuple[_Slot, Value, int]], rated_power_w: float | None, first: bool
) -> list[Change]:
    """Counts and flags for each reading; the ones that changed, marked as events or not."""
    out: list[Change] = []
    for slot, raw, unknown_flags in readings:
        if raw == slot.raw and unknown_flags == slot.unknown and not slot.rated:
            continue  # the same reading as last cycle: the same count and flags (most points, most cycles)
        slot.raw, slot.unknown = raw, unknown_flags
        value: int | bool
        if raw is None:
            value, flags = _last(slot), unknown_flags
        elif slot.binary:
            value, flags = bool(raw), ONLINE
        else:
            if slot.rated:
                count = raw * 1000.0 / rated_power_w if rated_power_w else math.nan
            else:
                count = raw / slot.scale
            # One chained comparison on the common path; NaN fails it as well as out-of-range values.
            if INT32_MIN <= count <= INT32_MAX:
                value, flags = round(count), ONLINE
            elif count > INT32_MAX:
                value, flags = INT32_MAX, ONLINE | OVERRANGE
            elif count < INT32_MIN:
                value, flags = INT32_MIN, ONLINE | OVERRANGE
            else:
                value, flags = _last(slot), NOT_ONLINE
        if value == slot.value and flags == slot.flags:
            continue
        if first:
            event = False
            slot.reported = value
        elif not slot.events:
            event = False
        elif flags != slot.flags or slot.binary:
            event = True
        else:
            event = abs(value - slot.reported) > slot.deadband
        if event:
            slot.reported = value
        slot.value = value
        slot.flags = flags
        out.append((slot.type, slot.index, value, flags, event))
    return out


def _last(slot: _Slot) -> int | bool:
    if slot.value is not None:
        return slot.value
    return False if slot.binary else 0
