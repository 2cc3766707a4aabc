"""DNP3 controls: the stack's command callbacks, validated and handed to asyncio."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import opendnp3 as o

from gateway.mapping.dnp3 import Command, ResolvedPoint
from gateway.site_command import CommandUpdate


@dataclass(frozen=True)
class Decision:
    """What a validated control does: its status, why (for the log), and its effects."""

    status: o.CommandStatus
    reason: str
    update: CommandUpdate | None = None
    charge_discharge_enabled: bool | None = None
    target_w: float | None = None


@dataclass(frozen=True)
class Control:
    point: ResolvedPoint
    command: Command | None  # None: status-only point, writes are NOT_SUPPORTED


OPERATE_NAMES = {
    o.OperateType.SelectBeforeOperate: "select-before-operate",
    o.OperateType.DirectOperate: "direct operate",
    o.OperateType.DirectOperateNoAck: "direct operate no ack",
}
ANALOG_COMMANDS = (o.AnalogOutputInt16, o.AnalogOutputInt32, o.AnalogOutputFloat32, o.AnalogOutputDouble64)


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
