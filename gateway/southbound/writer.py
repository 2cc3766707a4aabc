"""Which setpoint writes to send, and what was confirmed: the bookkeeping of idempotent, paced writes.

Pure (time passed in). A value is written only when it differs from the last value the device confirmed
by more than the point's deadband (and encodes to different registers), or when the refresh interval
asks for a rewrite (devices whose watchdog drops a setpoint that was not rewritten). The same command
twice changes nothing on the device and costs no flash write. After a new connection the device's state
is unknown (it may have rebooted): the confirmed values are re-learnt from the first good poll.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gateway.profiles.codec import Value, raw_range
from gateway.profiles.model import Point
from gateway.southbound.errors import FieldError


@dataclass(frozen=True)
class WritePolicy:
    """How a session paces writes (set per site; the defaults suit a 100 ms loop)."""

    refresh_s: float | None = None  # rewrite an unchanged value this often; None: never
    heartbeat_interval_s: float | None = 1.0  # write the profile's `heartbeat` point this often; None: off
    verify_points: frozenset[str] = frozenset()  # points read back after each write
    retry_after_s: float = 1.0  # a point whose write failed is not written again sooner


class WriteStatus(enum.StrEnum):
    WRITTEN = "written"
    UNCHANGED = "unchanged"  # within the deadband of the confirmed value: nothing sent
    DEFERRED = "deferred"  # an earlier write of this point failed; waiting `retry_after_s`
    FAILED = "failed"


@dataclass(frozen=True)
class WriteOutcome:
    point: str
    value: Value
    status: WriteStatus
    error: FieldError | None = None


@dataclass
class WritePlan:
    """One cycle's writes of one session, decided before any is sent: the outcomes known without a
    request (None where a send will tell), the sends (outcome slot, point, value, words) and the
    heartbeat (point, counter) when due."""

    outcomes: list[WriteOutcome | None] = field(default_factory=list)
    sends: list[tuple[int, Point, float, list[int]]] = field(default_factory=list)
    heartbeat: tuple[Point, int] | None = None

    @property
    def idle(self) -> bool:
        """Nothing to send."""
        return not self.sends and self.heartbeat is None


@dataclass(frozen=True)
class Confirmed:
    value: float
    words: tuple[int, ...]
    at_s: float


@dataclass
class WriteState:
    """Per-session write bookkeeping."""

    policy: WritePolicy = field(default_factory=WritePolicy)
    confirmed: dict[str, Confirmed] = field(default_factory=dict)
    disabled: dict[str, FieldError] = field(default_factory=dict)  # the device refused (exception 01)
    retry_at_s: dict[str, float] = field(default_factory=dict)
    writes_by_point: dict[str, int] = field(default_factory=dict)  # acknowledged writes (flash wear)
    writes_total: int = 0  # their sum (read every cycle for the snapshot's accounts)
    heartbeat_counter: int | None = None
    heartbeat_due_s: float = float("-inf")
    heartbeats: int = 0  # heartbeat writes, counted apart: devices keep that register in RAM
    # The share of the interval by which a connection's second heartbeat comes early, so that units
    # connected together do not all write their heartbeat in the same cycles (0: not staggered).
    stagger: float = 0.0

    def forget_device(self) -> None:
        """A new connection: what the device holds is unknown until the next good poll."""
        self.confirmed.clear()
        self.retry_at_s.clear()
        self.heartbeat_counter = None
        self.heartbeat_due_s = float("-inf")

    def learn(
        self,
        points: Mapping[str, Point],
        values: Mapping[str, Value | None],
        raw: Mapping[str, Sequence[int]],
        now_s: float,
    ) -> None:
        """Take the device's current writable values as confirmed (only those not confirmed yet)."""
        for name, point in points.items():
            if not point.access.writable or name in self.confirmed:
                continue
            value, words = values.get(name), raw.get(name)
            if isinstance(value, int | float) and words is not None:
                self.confirmed[name] = Confirmed(float(value), tuple(words), now_s)
                if name == "heartbeat" and self.heartbeat_counter is None:
                    self.heartbeat_counter = int(value)

    def decide(self, point: Point, value: float, words: Sequence[int], now_s: float) -> WriteStatus | None:
        """None: send the write. Otherwise why not."""
        if now_s < self.retry_at_s.get(point.name, float("-inf")):
            return WriteStatus.DEFERRED
        last = self.confirmed.get(point.name)
        if last is None:
            return None
        refresh_due = self.policy.refresh_s is not None and now_s - last.at_s >= self.policy.refresh_s
        unchanged = tuple(words) == last.words or abs(value - last.value) <= point.deadband
        return WriteStatus.UNCHANGED if unchanged and not refresh_due else None

    def written(self, point: Point, value: float, words: Sequence[int], now_s: float) -> None:
        self.confirmed[point.name] = Confirmed(value, tuple(words), now_s)
        self.retry_at_s.pop(point.name, None)
        self.writes_by_point[point.name] = self.writes_by_point.get(point.name, 0) + 1
        self.writes_total += 1

    def failed(self, point: Point, now_s: float) -> None:
        self.confirmed.pop(point.name, None)  # what the device holds now is unknown
        self.retry_at_s[point.name] = now_s + self.policy.retry_after_s

    def next_heartbeat(self, point: Point, now_s: float) -> int | None:
        """The counter value to write now, or None when no heartbeat is due."""
        interval = self.policy.heartbeat_interval_s
        if interval is None or now_s < self.heartbeat_due_s:
            return None
        limits = raw_range(point)
        high = int(point.maximum) if point.maximum is not None else (limits[1] if limits else 0xFFFF)
        low = max(0, int(point.minimum)) if point.minimum is not None else 0
        counter = (self.heartbeat_counter if self.heartbeat_counter is not None else low - 1) + 1
        return counter if low <= counter <= high else low

    def heartbeat_sent(self, counter: int | None, now_s: float) -> None:
        """Record a heartbeat write (`counter` None: it failed); either way the next is one interval away,
        or after a connection's first, less its `stagger` (never more than one interval)."""
        if counter is not None:
            self.heartbeat_counter = counter
            self.heartbeats += 1
        interval = self.policy.heartbeat_interval_s or 0.0
        first = self.heartbeat_due_s == float("-inf")
        self.heartbeat_due_s = now_s + interval * (1.0 - self.stagger if first else 1.0)
