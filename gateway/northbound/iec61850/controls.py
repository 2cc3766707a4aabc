"""SCADA controls: validated before libiec61850 replies, then handed to the engine as site commands.

The check handler runs before the reply, so an out-of-range operate fails at the client and changes
nothing; the operate handler turns an accepted control into a `CommandUpdate` for the next cycle. Both
run on libiec61850's connection thread: they decide quickly, hand over with `submit` (thread-safe, never
blocks), log every control with the client's address, and catch every exception (an exception escaping
into the C binding would be lost, and the client would get no answer).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import pyiec61850.pyiec61850 as iec

from gateway.mapping.iec61850 import DataObjectSpec
from gateway.northbound.adapter import NorthboundError, Submit
from gateway.northbound.iec61850.model import ControlPoint
from gateway.site_command import CommandUpdate

log = logging.getLogger(__name__)

ControlValue = float | bool


def decode_value(mms_value: Any, cdc: str) -> ControlValue:
    """The ctlVal of an operate: APC → float (an AnalogueValue structure {f} or {i}), SPC → bool."""
    kind = iec.MmsValue_getType(mms_value)
    if cdc == "SPC":
        if kind != iec.MMS_BOOLEAN:
            raise ValueError(f"an SPC ctlVal must be a boolean, got MMS type {kind}")
        return bool(iec.MmsValue_getBoolean(mms_value))
    if kind == iec.MMS_STRUCTURE:
        mms_value = iec.MmsValue_getElement(mms_value, 0)
        kind = iec.MmsValue_getType(mms_value)
    if kind == iec.MMS_FLOAT:
        return float(iec.MmsValue_toFloat(mms_value))
    if kind in (iec.MMS_INTEGER, iec.MMS_UNSIGNED):
        return float(iec.MmsValue_toInt32(mms_value))
    raise ValueError(f"an APC ctlVal must be a number, got MMS type {kind}")


def check_value(spec: DataObjectSpec, value: ControlValue) -> str | None:
    """Why `value` is refused for this control, or None when it is acceptable."""
    if spec.cdc == "SPC":
        return None if isinstance(value, bool) else f"{value!r} is not on/off"
    if isinstance(value, bool) or not math.isfinite(value):
        return f"{value!r} is not a finite number"
    assert spec.minimum is not None and spec.maximum is not None  # the map loader requires both
    if not spec.minimum <= value <= spec.maximum:
        return f"{value:g} is outside the accepted range {spec.minimum:g} .. {spec.maximum:g}"
    return None


def command_for(spec: DataObjectSpec, value: ControlValue, source: str) -> CommandUpdate:
    """The site command an accepted control becomes."""
    if spec.control == "request_w":
        return CommandUpdate(source=source, request_w=float(value))
    if spec.control == "balancing_enabled":
        return CommandUpdate(source=source, balancing_enabled=bool(value))
    raise ValueError(f"control {spec.name} has no site command target ({spec.control!r})")


def peer_of(control_action: Any) -> str:
    connection = iec.ControlAction_getClientConnection(control_action)
    if connection is None:
        return "an unknown client"
    return str(iec.ClientConnection_getPeerAddress(connection))


class _CheckHandler(iec.CheckHandlerForPython):  # type: ignore[misc]  # SWIG classes are untyped
    """Runs before libiec61850 answers an operate: a refused value fails at the client."""

    def __init__(self, control: ControlPoint) -> None:
        super().__init__()
        self._control = control

    def trigger(self) -> None:
        control = self._control
        result = iec.CONTROL_VALUE_INVALID
        try:
            value = decode_value(self._libiec61850_mms_value, control.spec.cdc)
            problem = check_value(control.spec, value)
            if problem is None:
                result = iec.CONTROL_ACCEPTED
            else:
                log.warning(
                    "IEC 61850 operate of %s from %s refused: %s",
                    control.reference,
                    peer_of(self._libiec61850_control_action),
                    problem,
                )
        except Exception:  # never let an exception reach the C binding
            log.exception("IEC 61850 check of %s failed; the operate is refused", control.reference)
        self._libiec61850_check_handler_result = result


class _OperateHandler(iec.ControlHandlerForPython):  # type: ignore[misc]  # SWIG classes are untyped
    """Runs after the check accepted the operate: hands the command to the engine."""

    def __init__(self, control: ControlPoint, submit: Submit) -> None:
        super().__init__()
        self._control = control
        self._submit = submit

    def trigger(self) -> None:
        control = self._control
        result = iec.CONTROL_RESULT_FAILED
        try:
            value = decode_value(self._libiec61850_mms_value, control.spec.cdc)
            peer = peer_of(self._libiec61850_control_action)
            problem = check_value(control.spec, value)
            if problem is not None:
                log.warning("IEC 61850 operate of %s from %s refused: %s", control.reference, peer, problem)
            elif self._libiec61850_test:
                log.info(
                    "IEC 61850 test operate %s = %s from %s: not applied", control.reference, value, peer
                )
                result = iec.CONTROL_RESULT_OK
            else:
                self._submit(command_for(control.spec, value, f"iec61850 {peer}"))
                log.info("IEC 61850 operate %s = %s from %s accepted", control.reference, value, peer)
                result = iec.CONTROL_RESULT_OK
        except Exception:  # never let an exception reach the C binding
            log.exception("IEC 61850 operate of %s failed", control.reference)
        self._libiec61850_control_handler_result = result


class ControlHandlers:
    """The check and operate handlers of every control point, registered on one server."""

    def __init__(self, server: Any, controls: Sequence[ControlPoint], submit: Submit) -> None:
        self._subscribers: list[Any] = []
        for control in controls:
            subscriber = iec.ControlSubscriberForPython()
            subscriber.setIedServer(server)
            subscriber.setControlObject(control.data_object)
            # The subscriber owns its handlers and deletes them with itself: hand them over with
            # __disown__, or Python deletes them a second time (measured: segfault at the next stop).
            subscriber.setCheckHandler(_CheckHandler(control).__disown__())
            subscriber.setControlHandler(_OperateHandler(control, submit).__disown__())
            self._subscribers.append(subscriber)
            if not subscriber.subscribe():
                raise NorthboundError(
                    f"cannot register the IEC 61850 control handlers of {control.reference}"
                )

    def release(self) -> None:
        """Drop the subscribers (after the server stopped). The binding finds handlers by object
        reference, and a stale subscriber would silently swallow the next start's registration."""
        self._subscribers.clear()
