"""Publishes each cycle's snapshot into the MMS model, on the adapter's own thread.

`offer` (called on the asyncio loop) only drops the snapshot into a one-place slot, replacing one the
thread has not taken yet: a slow update skips cycles instead of queueing them. `offer_nodes` adds the
states of nodes whose poll answered before their cycle's snapshot (the newest per node; a snapshot
replaces them all, since it carries them): the thread writes those nodes' devices at once, read with
the dispatch and parameters of the snapshot it wrote last. The thread goes through
the logical devices one by one: it computes the device's published values off the loop, then writes
what changed (value, quality, time) through ctypes (`native.py`), holding the data-model lock for
that device. What changed, and which MV moved past its deadband, is decided by the change tracker every
protocol shares (`gateway/mapping/changes.py`). `t` is the time of the last change of value or quality,
as IEC 61850-7-3 defines it, so unchanged data costs nothing. `stop` is noticed between two devices: the
rest of the snapshot is dropped.

Quality (`gateway/mapping/quality.py`, docs/quality.md) becomes the bits of `QUALITY`: a stale pack's
values are questionable + oldData, stamped with the time they were read; an offline pack's are invalid +
failure, keeping the last value; a value never known (before the first cycle, a point the profile lacks)
is invalid.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import NamedTuple

import pyiec61850.pyiec61850 as iec

from gateway.fleet import NodeState
from gateway.fleet import Quality as NodeQuality
from gateway.mapping.changes import Change, ChangeTracker, NodeInputs
from gateway.mapping.quality import ValueQuality, fleet_value_quality, node_value_quality
from gateway.mapping.sources import read_fleet, read_node
from gateway.northbound.adapter import NodeUpdate
from gateway.northbound.iec61850.model import FixedValue, Publication, ValueKind
from gateway.northbound.iec61850.native import ModelWriter
from gateway.snapshot import CycleSnapshot

log = logging.getLogger(__name__)

QUALITY_GOOD = iec.QUALITY_VALIDITY_GOOD
QUALITY_OLD = iec.QUALITY_VALIDITY_QUESTIONABLE | iec.QUALITY_DETAIL_OLD_DATA
QUALITY_INVALID = iec.QUALITY_VALIDITY_INVALID | iec.QUALITY_DETAIL_FAILURE
QUALITY_MISSING = iec.QUALITY_VALIDITY_INVALID
QUALITY: Mapping[ValueQuality, int] = {
    ValueQuality.GOOD: QUALITY_GOOD,
    ValueQuality.STALE: QUALITY_OLD,
    ValueQuality.OFFLINE: QUALITY_INVALID,
    ValueQuality.MISSING: QUALITY_MISSING,
}
STOP_TIMEOUT_S = 5.0

Shown = float | bool | int | None


class Reading(NamedTuple):  # a tuple, not a dataclass: one per changed data object, thousands a cycle
    value: Shown  # None: unknown (the last value stays, with invalid quality)
    quality: int
    time_ms: int


def snapshot_time_ms(snapshot: CycleSnapshot) -> int:
    return int(snapshot.wall_time.timestamp() * 1000)


def read_publication(
    publication: Publication,
    snapshot: CycleSnapshot,
    now_ms: int | None = None,
    node: NodeState | None = None,
) -> Reading:
    """What `publication` shows for this cycle (`now_ms`: the snapshot's time, if already known); a
    node's publication shows `node` when given (a state newer than the snapshot's), else the snapshot's."""
    spec = publication.spec
    if now_ms is None:
        now_ms = snapshot_time_ms(snapshot)
    if spec.source is None:
        return Reading(_convert(publication, spec.value), QUALITY_GOOD, now_ms)
    if publication.node_id is None:
        raw = read_fleet(spec.source, snapshot)
        kind = fleet_value_quality(snapshot.fleet, raw)
        time_ms = now_ms
    else:
        if node is None:
            node = snapshot.fleet.node(publication.node_id)
        raw = read_node(spec.source, snapshot, node)
        kind = node_value_quality(node, spec.source, raw)
        # A stale pack's values (known or not) date from its last good poll; its loss indicators are news.
        dated = node.quality is NodeQuality.STALE and kind is not ValueQuality.GOOD
        time_ms = now_ms - int(node.age_s * 1000) if dated else now_ms
    return Reading(_convert(publication, raw), QUALITY[kind], time_ms)


def _convert(publication: Publication, raw: float | bool | None) -> Shown:
    if raw is None:
        return None
    states = publication.spec.states
    if states is not None:
        return states[bool(raw)]
    if publication.kind is ValueKind.BOOL:
        return bool(raw)
    if publication.kind is ValueKind.INT:
        return round(raw)
    return float(raw)


Sourced = tuple[int, Publication]  # position in `Updater.publications`, a publication with a source


def _devices(publications: Sequence[Publication]) -> list[list[Sourced]]:
    """The sourced publications grouped by logical device (of one node, or of the fleet)."""
    sourced = [(i, p) for i, p in enumerate(publications) if p.spec.source is not None]
    return [list(group) for _, group in itertools.groupby(sourced, key=lambda item: item[1].node_id)]


class LatestSlot:
    """Holds at most one snapshot and the node states offered after it: `put` replaces both (latest
    wins: the snapshot carries every node), `put_nodes` keeps the newest state of each node."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._item: CycleSnapshot | None = None
        self._nodes: dict[str, NodeState] = {}
        self._nodes_time_ms = 0
        self._closed = False

    def put(self, item: CycleSnapshot) -> None:
        with self._condition:
            self._item = item
            self._nodes = {}
            self._condition.notify()

    def put_nodes(self, update: NodeUpdate) -> None:
        with self._condition:
            for node in update.nodes:
                self._nodes[node.node_id] = node
            self._nodes_time_ms = int(update.wall_time.timestamp() * 1000)
            self._condition.notify()

    def take(self) -> tuple[CycleSnapshot | None, list[NodeState], int] | None:
        """The latest snapshot (None if none came since), the node states offered after it and their
        time, waiting for either; None once closed."""
        with self._condition:
            while self._item is None and not self._nodes and not self._closed:
                self._condition.wait()
            if self._closed:
                return None
            taken = (self._item, list(self._nodes.values()), self._nodes_time_ms)
            self._item, self._nodes = None, {}
            return taken

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()


class Updater:
    """Keeps the model's values current; `offer` is safe to call from the asyncio loop."""

    def __init__(self, writer: ModelWriter, publications: Sequence[Publication]) -> None:
        self._writer = writer
        self.publications = list(publications)
        self._tracker = ChangeTracker([publication.spec.deadband for publication in self.publications])
        self.latest: CycleSnapshot | None = None  # the snapshot last offered
        self._devices = _devices(self.publications)
        self._node_devices = {device[0][1].node_id: device for device in self._devices}
        self._written: CycleSnapshot | None = None  # the snapshot the thread wrote last
        self._inputs = NodeInputs()  # a pack's device is not read again from the same inputs
        self._slot = LatestSlot()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def write_fixed(self, fixed: Sequence[FixedValue], now: datetime) -> None:
        """Name plates, descriptions, units, ranges and constant data: once, before clients come."""
        writer = self._writer
        with writer.locked():
            for item in fixed:
                if isinstance(item.value, str):
                    writer.text(item.attribute, item.value)
                elif isinstance(item.value, float):
                    writer.float(item.attribute, item.value)
                else:
                    writer.int32(item.attribute, item.value)
        # Constants are good from the start; everything else is invalid until the first cycle.
        time_ms = int(now.timestamp() * 1000)
        readings = [
            (p, Reading(_convert(p, p.spec.value), QUALITY_GOOD, time_ms))
            if p.spec.source is None
            else (p, Reading(None, QUALITY_MISSING, time_ms))
            for p in self.publications
        ]
        for _, device in itertools.groupby(readings, key=lambda change: change[0].node_id):
            self._write(list(device))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="socgw-iec61850-updater", daemon=True)
        self._thread.start()

    def offer(self, snapshot: CycleSnapshot) -> None:
        self.latest = snapshot
        self._slot.put(snapshot)

    def offer_nodes(self, update: NodeUpdate) -> None:
        self._slot.put_nodes(update)

    def rated_power_w(self) -> float | None:
        """The fleet's rated power as of the latest cycle (for the control handlers' threads)."""
        latest = self.latest
        return None if latest is None else latest.rated_power_w()

    def stop(self) -> bool:
        """Stop the thread (it drops the rest of a snapshot it is writing); False when it is still
        running after STOP_TIMEOUT_S, and so may still write into the model."""
        self._stopping.set()
        self._slot.close()
        thread = self._thread
        if thread is None:
            return True
        thread.join(STOP_TIMEOUT_S)
        if thread.is_alive():
            log.error("the IEC 61850 updater thread did not stop within %.0f s", STOP_TIMEOUT_S)
            return False
        self._thread = None
        return True

    def apply(self, snapshot: CycleSnapshot) -> int:
        """Write this snapshot's changes into the model, device by device, until `stop`; returns how
        many data objects changed."""
        now_ms = snapshot_time_ms(snapshot)
        self._inputs.context((snapshot.params, snapshot.command))
        written = 0
        for done, device in enumerate(self._devices):
            if self._stopping.is_set():
                log.debug(
                    "stopping: cycle %d left after %d of %d devices", snapshot.index, done, len(self._devices)
                )
                break
            node_id = device[0][1].node_id
            node = None if node_id is None else snapshot.fleet.node(node_id)
            written += self._apply_device(device, snapshot, now_ms, node)
        self._written = snapshot
        return written

    def apply_nodes(self, nodes: Sequence[NodeState], now_ms: int) -> int:
        """Write the changes of these nodes' devices, read with the snapshot written last (nothing
        before the first); returns how many data objects changed."""
        snapshot = self._written
        if snapshot is None:
            return 0
        written = 0
        for node in nodes:
            device = self._node_devices.get(node.node_id)
            if device is None:
                continue
            if self._stopping.is_set():
                break
            written += self._apply_device(device, snapshot, now_ms, node)
        return written

    def _apply_device(
        self, device: Sequence[Sourced], snapshot: CycleSnapshot, now_ms: int, node: NodeState | None
    ) -> int:
        """Write what changed in one logical device (`node`: the state its node shows; None for the
        fleet's device). A node's device read from the same inputs as last time is left as it is."""
        inputs = None if node is None else (node, snapshot.node_dispatch(node.node_id))
        if node is not None and not self._inputs.changed(node.node_id, inputs):
            return 0
        observe = self._tracker.observe
        report = Change.REPORT
        changes: list[tuple[Publication, Reading]] = []
        reported: list[int] = []
        try:
            for position, publication in device:
                reading = read_publication(publication, snapshot, now_ms, node)
                if observe(position, reading.value, reading.quality) is report:
                    changes.append((publication, reading))
                    reported.append(position)
        except BaseException:  # a source raised: the changes seen so far were not written
            for position in reported:
                self._tracker.forget(position)
            raise
        if changes:
            self._write(changes)
        if node is not None:
            self._inputs.record(node.node_id, inputs)
        return len(changes)

    def _write(self, changes: Sequence[tuple[Publication, Reading]]) -> None:
        """One logical device's changes under one lock: a client reading meanwhile sees each device
        whole, and waits at most one device's updates (every changed value costs libiec61850 a scan of
        every buffered report's dataset, so a whole large fleet under one lock would hold reads for long)."""
        writer = self._writer
        write_float, write_bool, write_int = writer.float, writer.boolean, writer.int32
        write_quality, write_time = writer.quality, writer.utc_ms
        with writer.locked():
            for publication, (value, quality, time_ms) in changes:
                if value is not None:
                    if publication.kind is ValueKind.FLOAT:
                        write_float(publication.value_attribute, float(value))
                    elif publication.kind is ValueKind.BOOL:
                        write_bool(publication.value_attribute, bool(value))
                    else:
                        write_int(publication.value_attribute, int(value))
                write_quality(publication.quality_attribute, quality)
                write_time(publication.time_attribute, time_ms)

    def _run(self) -> None:
        while (taken := self._slot.take()) is not None:
            snapshot, nodes, nodes_time_ms = taken
            what = f"cycle {snapshot.index}" if snapshot is not None else f"{len(nodes)} node(s)"
            try:
                if snapshot is not None:
                    self.apply(snapshot)
                if nodes:
                    self.apply_nodes(nodes, nodes_time_ms)
            except Exception:  # a bad value must not end publishing: log once per failure streak
                if not self._failing:
                    log.exception("IEC 61850 update of %s failed", what)
                self._failing = True
            else:
                if self._failing:
                    log.info("IEC 61850 updates work again (%s)", what)
                self._failing = False
