"""DNP3 controls: the stack's command callbacks, and how the control table's answers become statuses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import opendnp3 as o

from gateway.mapping.controls import RefusalKind, Target
from gateway.mapping.dnp3 import ResolvedPoint

ANALOG_COMMANDS = (o.AnalogOutputInt16, o.AnalogOutputInt32, o.AnalogOutputFloat32, o.AnalogOutputDouble64)
# How each refusal of the control table reaches the master.
REFUSAL_STATUS: Mapping[RefusalKind, o.CommandStatus] = {
    RefusalKind.OUT_OF_RANGE: o.CommandStatus.OUT_OF_RANGE,
    RefusalKind.NOT_READY: o.CommandStatus.HARDWARE_ERROR,
    RefusalKind.WRONG_KIND: o.CommandStatus.NOT_SUPPORTED,
}


@dataclass(frozen=True)
class Control:
    """An output point, and the control target a write to it changes (None: status only)."""

    point: ResolvedPoint
    target: Target | None
    scale: float  # target value = count × scale
    bounds: tuple[float | None, float | None]  # the map's min/max, in the target's unit

    @classmethod
    def of(cls, point: ResolvedPoint) -> Control:
        spec = point.spec
        target = spec.command
        scale = spec.scale
        if target is Target.REQUEST_W and spec.rated_permille:
            target, scale = Target.REQUEST_PCT_RATED, 0.1  # counts of 0.1 % of the rated power
        low = None if spec.minimum is None else spec.minimum * scale
        high = None if spec.maximum is None else spec.maximum * scale
        return cls(point, target, scale, (low, high) if scale > 0 else (high, low))  # < 0 flips the range

    def value_of(self, command: Any) -> float | bool | None:
        """The value written, in the target's unit (None: a CROB that is not a latch)."""
        if isinstance(command, ANALOG_COMMANDS):
            return float(command.value) * self.scale
        return crob_state(command)


def crob_state(crob: Any) -> bool | None:
    """On/off from a CROB: LATCH_ON/LATCH_OFF, or a pulse with CLOSE/TRIP; None for anything else."""
    operation, code = crob.opType, crob.tcc
    if code == o.TripCloseCode.CLOSE and operation == o.OperationType.PULSE_ON:
        return True
    if code == o.TripCloseCode.TRIP and operation == o.OperationType.PULSE_ON:
        return False
    if code != o.TripCloseCode.NUL:
        return None
    if operation == o.OperationType.LATCH_ON:
        return True
    if operation == o.OperationType.LATCH_OFF:
        return False
    return None


OPERATE_NAMES = {
    o.OperateType.SelectBeforeOperate: "select-before-operate",
    o.OperateType.DirectOperate: "direct operate",
    o.OperateType.DirectOperateNoAck: "direct operate no ack",
}


class ControlTarget(Protocol):
    """What the command callbacks call: the outstation's validation and its failure report."""

    def control(self, command: Any, index: int, operate_type: Any) -> o.CommandStatus: ...

    def report_failure(self, index: int, error: Exception) -> None: ...


class CommandHandler(o.ICommandHandler):  # type: ignore[misc]
    """The stack's control callbacks (its I/O thread): validate, hand over, answer; never raise."""

    def __init__(self, outstation: ControlTarget) -> None:
        super().__init__()
        self._outstation = outstation

    def Begin(self) -> None:
        return None

    def End(self) -> None:
        return None

    def Select(self, command: Any, index: int) -> o.CommandStatus:
        try:
            return self._outstation.control(command, index, None)
        except Exception as error:
            self._outstation.report_failure(index, error)
            return o.CommandStatus.HARDWARE_ERROR

    def Operate(self, command: Any, index: int, handler: Any, operate_type: Any) -> o.CommandStatus:
        try:
            return self._outstation.control(command, index, operate_type)
        except Exception as error:
            self._outstation.report_failure(index, error)
            return o.CommandStatus.HARDWARE_ERROR
