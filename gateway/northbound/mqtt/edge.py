"""The Sparkplug B 3.0 edge node: which messages one cycle makes, and what a host's command does.

    births     NBIRTH (seq 0, bdSeq of the connection's Will, every node metric, Rebirth = false)
               and one DBIRTH per online pack
    update     NDATA / DDATA of what moved beyond its deadband (report by exception), DDEATH for a pack
               gone offline, DBIRTH for one back
    update_nodes  the same for the packs whose poll answered before their cycle's snapshot (DDATA,
               DDEATH, DBIRTH; read with the latest snapshot's dispatch and parameters)
    command    NCMD / DCMD: Rebirth, or a control checked by `mapping.controls.decide` and handed to
               `submit`; anything else is refused, logged, and changes nothing

Every message after NBIRTH has seq + 1, wrapping at 255. No I/O here: the client (client.py) sends
what these return.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.fleet import NodeState
from gateway.logbook import RateLimitedLog, emit_to
from gateway.mapping.changes import Change, ChangeTracker, NodeInputs
from gateway.mapping.controls import Context, Refusal, decide
from gateway.mapping.quality import fleet_value_quality, node_value_quality
from gateway.mapping.sources import read_fleet, read_node
from gateway.northbound.adapter import Submit
from gateway.northbound.mqtt.metrics import BD_SEQ, REBIRTH, DataType, MetricSpec, MetricTable
from gateway.northbound.mqtt.payload import PayloadError, Reading, decode_command, encode
from gateway.snapshot import CycleSnapshot

log = logging.getLogger("socgw.mqtt")
NAMESPACE = "spBv1.0"

Message = tuple[str, bytes]


@dataclass(frozen=True)
class Topics:
    group: str
    edge: str

    def node(self, kind: str) -> str:
        return f"{NAMESPACE}/{self.group}/{kind}/{self.edge}"

    def device(self, kind: str, device: str) -> str:
        return f"{NAMESPACE}/{self.group}/{kind}/{self.edge}/{device}"

    @staticmethod
    def state(host_id: str) -> str:
        return f"{NAMESPACE}/STATE/{host_id}"


def death_payload(bd_seq: int) -> bytes:
    """The NDEATH (the MQTT Will): bdSeq only, no seq."""
    return encode((), 0, None, extra=((BD_SEQ, DataType.INT64, bd_seq),))


class EdgeNode:
    def __init__(
        self, topics: Topics, table: MetricTable, node_ids: Sequence[str], submit: Submit, source: str
    ) -> None:
        self.topics = topics
        self._table = table
        self._node_ids = tuple(node_ids)
        self._index = {node_id: index for index, node_id in enumerate(self._node_ids)}
        self._submit = submit
        self._source = source  # who commands, as the site command log names it
        self._seq = 0
        self._node_tracker = ChangeTracker([spec.deadband for spec in table.node])
        per = len(table.device)
        self._device_tracker = ChangeTracker([spec.deadband for spec in table.device] * len(self._node_ids))
        self._device_base = [index * per for index in range(len(self._node_ids))]
        self._alive: list[bool] = [False] * len(self._node_ids)
        self._inputs = NodeInputs()  # a pack is not read again from the same inputs
        self.latest: CycleSnapshot | None = None
        self._refusals = RateLimitedLog(emit_to(log))  # garbage can arrive without end

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) % 256
        return self._seq

    # --- what a cycle publishes -------------------------------------------------------------------

    def births(self, snapshot: CycleSnapshot, bd_seq: int) -> list[Message]:
        """NBIRTH and a DBIRTH per online pack: the whole state, after a connect or a Rebirth."""
        self.latest = snapshot
        self._seq = 0
        stamp = _stamp(snapshot)
        readings = self._node_readings(snapshot, births=True)
        extra = ((BD_SEQ, DataType.INT64, bd_seq), (REBIRTH, DataType.BOOLEAN, False))
        messages = [(self.topics.node("NBIRTH"), encode(readings, stamp, 0, birth=True, extra=extra))]
        for node in snapshot.fleet.nodes:
            index = self._index.get(node.node_id)
            if index is None:
                continue
            self._alive[index] = node.online
            if node.online:
                messages.append(self._device_birth(snapshot, node, index, stamp))
        return messages

    def update(self, snapshot: CycleSnapshot) -> list[Message]:
        """What changed since the last cycle: NDATA, DDATA, DDEATH, DBIRTH."""
        self.latest = snapshot
        stamp = _stamp(snapshot)
        messages: list[Message] = []
        readings = self._node_readings(snapshot, births=False)
        if readings:
            messages.append((self.topics.node("NDATA"), encode(readings, stamp, self._next_seq())))
        self._inputs.context((snapshot.params, snapshot.command))
        self._device_updates(snapshot, snapshot.fleet.nodes, stamp, messages)
        return messages

    def update_nodes(self, nodes: Sequence[NodeState], stamp: int) -> list[Message]:
        """What changed in these packs, polled before their cycle's snapshot, read with the latest
        snapshot (nothing before the first: the births carry them)."""
        messages: list[Message] = []
        if self.latest is not None:
            self._device_updates(self.latest, nodes, stamp, messages)
        return messages

    def _device_updates(
        self, snapshot: CycleSnapshot, nodes: Sequence[NodeState], stamp: int, messages: list[Message]
    ) -> None:
        for node in nodes:
            index = self._index.get(node.node_id)
            if index is None:
                continue
            if node.online != self._alive[index]:
                self._alive[index] = node.online
                if node.online:
                    messages.append(self._device_birth(snapshot, node, index, stamp))
                else:
                    death = encode((), stamp, self._next_seq())
                    messages.append((self.topics.device("DDEATH", node.node_id), death))
                continue
            inputs = (node, snapshot.node_dispatch(node.node_id))
            if node.online and self._inputs.changed(node.node_id, inputs):
                changed = self._device_readings(snapshot, node, index, births=False)
                self._inputs.record(node.node_id, inputs)
                if changed:
                    payload = encode(changed, stamp, self._next_seq())
                    messages.append((self.topics.device("DDATA", node.node_id), payload))

    def _device_birth(self, snapshot: CycleSnapshot, node: NodeState, index: int, stamp: int) -> Message:
        readings = self._device_readings(snapshot, node, index, births=True)
        payload = encode(readings, stamp, self._next_seq(), birth=True)
        return self.topics.device("DBIRTH", node.node_id), payload

    def _node_readings(self, snapshot: CycleSnapshot, *, births: bool) -> list[Reading]:
        readings: list[Reading] = []
        tracker = self._node_tracker
        for slot, spec in enumerate(self._table.node):
            value = _node_value(spec, snapshot)
            quality = fleet_value_quality(snapshot.fleet, value)
            if births:
                tracker.forget(slot)
            if tracker.observe(slot, value, quality) is Change.REPORT:
                readings.append(Reading(spec, value, quality))
        return readings

    def _device_readings(
        self, snapshot: CycleSnapshot, node: NodeState, index: int, *, births: bool
    ) -> list[Reading]:
        readings: list[Reading] = []
        tracker = self._device_tracker
        base = self._device_base[index]
        for offset, spec in enumerate(self._table.device):
            value = read_node(spec.source, snapshot, node)
            quality = node_value_quality(node, spec.source, value)
            if births:
                tracker.forget(base + offset)
            if tracker.observe(base + offset, value, quality) is Change.REPORT:
                readings.append(Reading(spec, value, quality))
        return readings

    # --- what a host asks -------------------------------------------------------------------------

    def command(self, topic: str, data: bytes, rated_power_w: float | None) -> bool:
        """Handle an NCMD or DCMD; True when the host asked for a Rebirth."""
        device = self._command_device(topic)
        if device is None:
            self._refuse(topic, "not this edge node's command topic")
            return False
        try:
            metrics = decode_command(data)
        except PayloadError as error:
            self._refuse(topic, str(error))
            return False
        rebirth = False
        for name, value in metrics:
            if device == "" and name == REBIRTH:
                if value is True:
                    rebirth = True
                else:
                    self._refuse(topic, f"`{REBIRTH}` must be Boolean true, not {value!r}")
                continue
            spec = self._table.node_command(name) if device == "" else self._table.device_command(name)
            if spec is None:
                self._refuse(topic, f"no writable metric `{name}`")
                continue
            self._control(topic, spec, value, device or None, rated_power_w)
        return rebirth

    def _command_device(self, topic: str) -> str | None:
        """'' for this node's NCMD, the pack id for one of its packs' DCMD, None for anything else."""
        if topic == self.topics.node("NCMD"):
            return ""
        prefix = self.topics.node("DCMD") + "/"
        if topic.startswith(prefix) and topic[len(prefix) :] in self._index:
            return topic[len(prefix) :]
        return None

    def _control(
        self, topic: str, spec: MetricSpec, value: object, node_id: str | None, rated: float | None
    ) -> None:
        assert spec.control is not None  # only writable metrics come here
        if not isinstance(value, float | int | bool):
            self._refuse(topic, f"`{spec.name}` takes a {spec.datatype.name.lower()}, not {value!r}")
            return
        if spec.datatype is DataType.BOOLEAN and not isinstance(value, bool):
            self._refuse(topic, f"`{spec.name}` takes a Boolean, not {value!r}")
            return
        context = Context(source=self._source, rated_power_w=rated, node_id=node_id)
        decision = decide(spec.control, value if isinstance(value, bool) else float(value), context,
                          (spec.low, spec.high))  # fmt: skip
        if isinstance(decision, Refusal):
            self._refuse(topic, f"`{spec.name}` = {value!r}: {decision.reason}")
            return
        refusal = self._submit(decision)
        if refusal is not None:
            self._refuse(topic, f"`{spec.name}` = {value!r}: {refusal}")
        else:
            log.info("%s on %s: %s = %r accepted", self._source, topic, spec.name, value)

    def _refuse(self, topic: str, reason: str) -> None:
        self._refusals.log(
            f"mqtt-refused {topic}", logging.WARNING,
            f"{self._source}: command on {topic} refused, nothing changed: {reason}",
        )  # fmt: skip


def _stamp(snapshot: CycleSnapshot) -> int:
    return int(snapshot.wall_time.timestamp() * 1000)


def _node_value(spec: MetricSpec, snapshot: CycleSnapshot) -> float | bool | None:
    source = spec.source
    if source.startswith("cycle."):
        accounts = snapshot.accounts
        if source == "cycle.overruns":
            return float(accounts.overruns)
        if source == "cycle.index":
            return float(snapshot.index)
        return accounts.steps_ms.get(source[len("cycle.") : -len("_ms")])
    return read_fleet(source, snapshot)
