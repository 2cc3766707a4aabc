"""SCADA controls: decided by the shared control table before libiec61850 replies, then handed to the
engine as site commands.

The check handler runs before the reply: a value the table refuses (`gateway/mapping/controls.py`:
out of the target's range or the data object's min/max, beyond the rated power), or that the site
command state would not take now (`submit(..., apply=False)`: a reserve or ceiling that does not fit
the values in force), fails at the client and changes nothing. The operate handler hands the accepted
control to the engine with `submit` (thread-safe, returns at once), which checks and applies it in one
step; a value that no longer fits by then reaches the client as a negative CommandTermination
(direct-with-enhanced-security). Both
run on libiec61850's connection thread, log every control with the client's address, and catch every
exception (one escaping into the C binding would be lost, and the client would get no answer).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import pyiec61850.pyiec61850 as iec

from gateway.mapping.controls import Context, ControlValue, Refusal, decide
from gateway.northbound.adapter import ClientBehind, NorthboundError, Submit, as_seen
from gateway.northbound.iec61850.model import ControlPoint
from gateway.site_command import CommandUpdate

log = logging.getLogger(__name__)

RatedPower = Callable[[], float | None]  # the fleet's rated power as of the latest cycle


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


def decide_control(
    control: ControlPoint, value: ControlValue, source: str, rated_power_w: float | None
) -> CommandUpdate | Refusal:
    """The control table's answer for an operate of `control` with `value`."""
    spec = control.spec
    assert spec.control is not None  # only data objects with a `control` become ControlPoints
    context = Context(source, rated_power_w, control.node_id)
    return decide(spec.control, value, context, (spec.minimum, spec.maximum))


class _Operation(NamedTuple):
    value: ControlValue
    peer: str
    outcome: CommandUpdate | Refusal


def _operation(
    control: ControlPoint, handler: Any, rated_power_w: RatedPower, client_behind: ClientBehind
) -> _Operation:
    """What a check or operate handler was asked (from the binding's fields) and the table's answer."""
    value = decode_value(handler._libiec61850_mms_value, control.spec.cdc)
    peer = client_behind(peer_of(handler._libiec61850_control_action))
    return _Operation(value, peer, decide_control(control, value, f"iec61850 {peer}", rated_power_w()))


def peer_of(control_action: Any) -> str:
    connection = iec.ControlAction_getClientConnection(control_action)
    if connection is None:
        return "an unknown client"
    return str(iec.ClientConnection_getPeerAddress(connection))


class _CheckHandler(iec.CheckHandlerForPython):  # type: ignore[misc]  # SWIG classes are untyped
    """Runs before libiec61850 answers an operate: a refused value fails at the client."""

    def __init__(
        self, control: ControlPoint, submit: Submit, rated_power_w: RatedPower, client_behind: ClientBehind
    ) -> None:
        super().__init__()
        self._control = control
        self._submit = submit
        self._rated_power_w = rated_power_w
        self._client_behind = client_behind

    def trigger(self) -> None:
        control = self._control
        result = iec.CONTROL_VALUE_INVALID
        try:
            _value, peer, outcome = _operation(control, self, self._rated_power_w, self._client_behind)
            refusal = outcome.reason if isinstance(outcome, Refusal) else self._submit(outcome, apply=False)
            if refusal is None:
                result = iec.CONTROL_ACCEPTED
            else:
                log.warning("IEC 61850 operate of %s from %s refused: %s", control.reference, peer, refusal)
        except Exception:  # never let an exception reach the C binding
            log.exception("IEC 61850 check of %s failed; the operate is refused", control.reference)
        self._libiec61850_check_handler_result = result


class _OperateHandler(iec.ControlHandlerForPython):  # type: ignore[misc]  # SWIG classes are untyped
    """Runs after the check accepted the operate: hands the command to the engine."""

    def __init__(
        self, control: ControlPoint, submit: Submit, rated_power_w: RatedPower, client_behind: ClientBehind
    ) -> None:
        super().__init__()
        self._control = control
        self._submit = submit
        self._rated_power_w = rated_power_w
        self._client_behind = client_behind

    def trigger(self) -> None:
        control = self._control
        result = iec.CONTROL_RESULT_FAILED
        try:
            value, peer, outcome = _operation(control, self, self._rated_power_w, self._client_behind)
            if isinstance(outcome, Refusal):  # the rated power changed since the check
                log.warning(
                    "IEC 61850 operate of %s from %s refused: %s", control.reference, peer, outcome.reason
                )
            elif self._libiec61850_test:
                log.info(
                    "IEC 61850 test operate %s = %s from %s: not applied", control.reference, value, peer
                )
                result = iec.CONTROL_RESULT_OK
            elif self._submit(outcome) is None:  # the engine logs the outcome either way
                log.info("IEC 61850 operate %s = %s from %s accepted", control.reference, value, peer)
                result = iec.CONTROL_RESULT_OK
        except Exception:  # never let an exception reach the C binding
            log.exception("IEC 61850 operate of %s failed", control.reference)
        self._libiec61850_control_handler_result = result


class ControlHandlers:
    """The check and operate handlers of every control point, registered on one server."""

    def __init__(
        self,
        server: Any,
        controls: Sequence[ControlPoint],
        submit: Submit,
        rated_power_w: RatedPower,
        client_behind: ClientBehind = as_seen,
    ) -> None:
        self._subscribers: list[Any] = []
        for control in controls:
            subscriber = iec.ControlSubscriberForPython()
            subscriber.setIedServer(server)
            subscriber.setControlObject(control.data_object)
            # The subscriber owns its handlers and deletes them with itself: hand them over with
            # __disown__, or Python deletes them a second time (measured: segfault at the next stop).
            subscriber.setCheckHandler(
                _CheckHandler(control, submit, rated_power_w, client_behind).__disown__()
            )
            subscriber.setControlHandler(
                _OperateHandler(control, submit, rated_power_w, client_behind).__disown__()
            )
            self._subscribers.append(subscriber)
            if not subscriber.subscribe():
                raise NorthboundError(
                    f"cannot register the IEC 61850 control handlers of {control.reference}"
                )

    def release(self) -> None:
        """Drop the subscribers (after the server stopped). The binding finds handlers by object
        reference, and a stale subscriber would silently swallow the next start's registration."""
        self._subscribers.clear()
