"""What travels between the control core and an adapter's child process, and how it is framed.

Two socket pairs per child:

- frames (SOCK_STREAM, core -> child): a 4-byte big-endian length, a kind byte, and a pickled body:
  `SNAPSHOT`, the cycle's `CycleSnapshot` (without the balancer's memory, which no adapter reads), or
  `NODES`, a `NodeUpdate`: the states of the nodes whose poll answered in the last few milliseconds,
  sent during the poll, before their cycle's snapshot (values published as they arrive). Pickle only
  flows from the core, which starts the child, to the child.
- messages (SOCK_SEQPACKET, both ways): one JSON object per packet, so each message arrives whole.
  The child sends `ready`, `failed`, `submit` and `log`; the core sends `answer`. JSON, not pickle,
  flows from the child, so a compromised protocol stack cannot run code in the core by what it sends.
"""

from __future__ import annotations

import copyreg
import dataclasses
import io
import operator
import pickle
import struct
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from gateway.balancer import BalancerMemory, ChargeSource
from gateway.fleet import NodeState
from gateway.northbound.adapter import NodeUpdate
from gateway.site_command import CommandUpdate
from gateway.snapshot import CycleSnapshot
from gateway.supervision import MessageError

FRAME_HEADER: Final = struct.Struct(">IB")  # the body's length, its kind
SNAPSHOT: Final = 0
NODES: Final = 1
MAX_MESSAGE_BYTES: Final = 65536  # one packet of the message socket; log lines are cut to fit


class ChannelError(MessageError):
    """A message that is not what the channel carries (a bug, or a child that misbehaves)."""


def _memory_without_state(memory: BalancerMemory) -> tuple[type[BalancerMemory], tuple[float]]:
    return BalancerMemory, (memory.timestamp_s,)


_NODE_FIELDS: Final = tuple(field.name for field in dataclasses.fields(NodeState))
# By name, not the attribute dict's order: a state built by `fleet.node_from_values` fills its dict in
# its own order.
_node_values: Final = operator.attrgetter(*_NODE_FIELDS)


def _node_fields(state: NodeState) -> tuple[Callable[[tuple[object, ...]], NodeState], tuple[object]]:
    # A node's values as one tuple, not its attribute dict: a quarter less work on each side, and every
    # node of the fleet goes through here twice a cycle (its NODES frame, the snapshot).
    return _node_state, (_node_values(state),)


def _node_state(values: tuple[object, ...]) -> NodeState:
    state = object.__new__(NodeState)
    state.__dict__.update(zip(_NODE_FIELDS, values, strict=True))  # as pickle restores a dataclass
    return state


_DISPATCH_TABLE: Final[dict[type, Any]] = {
    **copyreg.dispatch_table,
    BalancerMemory: _memory_without_state,
    NodeState: _node_fields,
}


def _frame(content: object, kind: int) -> bytes:
    buffer = io.BytesIO()
    buffer.write(b"\0" * FRAME_HEADER.size)
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _DISPATCH_TABLE
    pickler.dump(content)
    frame = buffer.getbuffer()
    FRAME_HEADER.pack_into(frame, 0, len(frame) - FRAME_HEADER.size, kind)
    return bytes(frame)


def encode_snapshot(snapshot: CycleSnapshot) -> bytes:
    """One SNAPSHOT frame: the snapshot pickled (without the balancer's memory)."""
    return _frame(snapshot, SNAPSHOT)


def encode_nodes(states: Sequence[NodeState], wall_time_s: float) -> bytes:
    """One NODES frame: these nodes' states, polled by `wall_time_s` (seconds since the epoch)."""
    return _frame((wall_time_s, tuple(states)), NODES)


def decode_snapshot(body: bytes) -> CycleSnapshot:
    snapshot = pickle.loads(body)
    if not isinstance(snapshot, CycleSnapshot):
        raise ChannelError(f"expected a CycleSnapshot frame, got {type(snapshot).__name__}")
    return snapshot


def decode_nodes(body: bytes) -> NodeUpdate:
    content = pickle.loads(body)
    if not (
        isinstance(content, tuple)
        and len(content) == 2
        and isinstance(content[0], float)
        and isinstance(content[1], tuple)
        and all(isinstance(state, NodeState) for state in content[1])
    ):
        raise ChannelError("expected a NODES frame: (time, node states)")
    return NodeUpdate(content[1], datetime.fromtimestamp(content[0], UTC))


def decode_frame(kind: int, body: bytes) -> CycleSnapshot | NodeUpdate:
    """The frame's content, by the kind its header names."""
    if kind == SNAPSHOT:
        return decode_snapshot(body)
    if kind == NODES:
        return decode_nodes(body)
    raise ChannelError(f"unknown frame kind {kind}")


# --- commands: CommandUpdate <-> JSON, checked field by field on the way in --------------------------


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ChannelError(f"expected a number, got {value!r}")
    return float(value)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ChannelError(f"expected true or false, got {value!r}")
    return value


def _node_switch(value: Any) -> tuple[str, bool]:
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)):
        raise ChannelError(f"expected [node id, true|false], got {value!r}")
    return value[0], _flag(value[1])


def _charge_source(value: Any) -> ChargeSource:
    try:
        return ChargeSource(value)
    except ValueError:
        raise ChannelError(f"unknown charge source {value!r}") from None


_UPDATE_FIELDS: Final[Mapping[str, Callable[[Any], object]]] = {
    "request_w": _number,
    "charge_source": _charge_source,
    "balancing_enabled": _flag,
    "maintenance": _node_switch,
    "calibrate": _node_switch,
    "charge_discharge_enabled": _flag,
    "reserve_pct": _number,
    "ceiling_pct": _number,
}


def update_to_json(update: CommandUpdate) -> dict[str, Any]:
    fields: dict[str, Any] = {"source": update.source}
    for name in _UPDATE_FIELDS:
        value = getattr(update, name)
        if value is not None:
            fields[name] = value
    return fields


def update_from_json(fields: Any) -> CommandUpdate:
    if not isinstance(fields, dict) or not isinstance(fields.get("source"), str):
        raise ChannelError("a command needs a `source` string")
    unknown = set(fields) - set(_UPDATE_FIELDS) - {"source"}
    if unknown:
        raise ChannelError(f"unknown command field(s): {', '.join(sorted(unknown))}")
    values = {name: _UPDATE_FIELDS[name](value) for name, value in fields.items() if name != "source"}
    return CommandUpdate(fields["source"], **values)  # type: ignore[arg-type]
