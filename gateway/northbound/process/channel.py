"""What travels between the control core and an adapter's child process, and how it is framed.

Two socket pairs per child:

- snapshots (SOCK_STREAM, core -> child): one frame per cycle, a 4-byte big-endian length and the
  pickled `CycleSnapshot`. Pickle only flows from the core, which starts the child, to the child.
  The balancer's memory (what one cycle hands the next) is left out: no adapter reads it.
- messages (SOCK_SEQPACKET, both ways): one JSON object per packet, so each message arrives whole.
  The child sends `ready`, `failed`, `submit` and `log`; the core sends `answer`. JSON, not pickle,
  flows from the child, so a compromised protocol stack cannot run code in the core by what it sends.
"""

from __future__ import annotations

import copyreg
import io
import pickle
import struct
from collections.abc import Callable, Mapping
from typing import Any, Final

from gateway.balancer import BalancerMemory, ChargeSource
from gateway.site_command import CommandUpdate
from gateway.snapshot import CycleSnapshot
from gateway.supervision import MessageError

FRAME_HEADER: Final = struct.Struct(">I")
MAX_MESSAGE_BYTES: Final = 65536  # one packet of the message socket; log lines are cut to fit


class ChannelError(MessageError):
    """A message that is not what the channel carries (a bug, or a child that misbehaves)."""


def _memory_without_state(memory: BalancerMemory) -> tuple[type[BalancerMemory], tuple[float]]:
    return BalancerMemory, (memory.timestamp_s,)


_DISPATCH_TABLE: Final = {**copyreg.dispatch_table, BalancerMemory: _memory_without_state}


def encode_snapshot(snapshot: CycleSnapshot) -> bytes:
    """One frame: length, then the snapshot pickled (without the balancer's memory)."""
    buffer = io.BytesIO()
    buffer.write(b"\0" * FRAME_HEADER.size)
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _DISPATCH_TABLE
    pickler.dump(snapshot)
    frame = buffer.getbuffer()
    FRAME_HEADER.pack_into(frame, 0, len(frame) - FRAME_HEADER.size)
    return bytes(frame)


def decode_snapshot(body: bytes) -> CycleSnapshot:
    snapshot = pickle.loads(body)
    if not isinstance(snapshot, CycleSnapshot):
        raise ChannelError(f"expected a CycleSnapshot frame, got {type(snapshot).__name__}")
    return snapshot


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
