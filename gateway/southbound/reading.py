"""What one poll of one unit yields (values, quality, age and cause), and what one point read yields."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.fleet import NodeState, Quality, node_from_values
from gateway.profiles.codec import Value
from gateway.profiles.model import Point
from gateway.southbound.errors import ErrorCode, FieldError


@dataclass(frozen=True, slots=True)
class Reading:
    """One unit's result of one poll.

    good: `values` were read in this poll (age 0), or for a unit on a shared RS-485 line in its last turn
    (`age_s` old, within its line plan's bound). stale: this poll failed and `values` are the last good
    ones, `age_s` old. failed: nothing usable (`values` empty); `error` says why. A good reading may still
    carry an `error` describing a standing condition (E_FW_UNKNOWN: monitored read-only).
    `values` are decoded engineering values keyed by vocabulary point name (None: not implemented);
    `state` is the canonical label of the `state` enum and `alarms` the labels of the set alarm bits.
    """

    node_id: str
    quality: Quality
    values: Mapping[str, Value | None]
    age_s: float
    error: FieldError | None
    timestamp_s: float
    state: str | None = None
    alarms: tuple[str, ...] = ()
    firmware: str | None = None
    read_only: bool = False

    @property
    def error_code(self) -> ErrorCode | None:
        return None if self.error is None else self.error.code

    def to_node_state(self) -> NodeState:
        """The fleet model's view of this reading (a value the model rejects makes the node failed)."""
        code = None if self.error_code is None else str(self.error_code)
        try:
            return node_from_values(
                self.node_id,
                self.values,
                quality=self.quality,
                age_s=self.age_s,
                error_code=code,
                alarms=self.alarms,
                state=self.state,
            )
        except ValueError:
            # A point of the wrong kind (text where a number belongs) is a profile error; the session logs
            # the model's message once, at the first good poll of each connection.
            return node_from_values(
                self.node_id, {}, quality=Quality.FAILED, error_code=str(ErrorCode.DECODE)
            )


@dataclass(frozen=True, slots=True)
class PointRead:
    """One point read on its own (`ModbusSession.read_point`): the raw words and the engineering value.

    `value` is None when the point, or the scale-factor register it needs, reads as its sentinel ("not
    implemented"); `scale_factor` is the power of ten its scale register held (None: none was applied).
    """

    point: Point
    words: list[int]
    value: Value | None
    scale_factor: int | None = None
