"""Cycle timing: per-step durations, percentiles and overruns, kept in a bounded window; the cycle's
period, stretched while the work needs more than the configured cycle; the garbage collector settled for
a steady-state loop, so that its pauses stay out of the cycle."""

from __future__ import annotations

import enum
import gc
import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# For a loop whose objects die young: at the default threshold (700 allocations) the collector ran 9-10
# times a cycle at 200 packs and 24-26 at 500 in the core (bench.pipeline); at 50 000, not once in 20 s.
GC_THRESHOLDS = (50_000, 50, 100)


def settle_collector() -> None:
    """Once a process's start-up is over (every long-lived object made): what is alive now leaves the
    collector's generations (`gc.freeze()`: a collection no longer walks it) and the young generation is
    collected every 50 000 allocations, not 700."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def percentile(values: Iterable[float], fraction: float) -> float:
    """Nearest-rank percentile (0 for no values); `fraction` in [0, 1]."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[rank]


@dataclass
class CycleStats:
    """Durations of the last `window` cycles, per step, in milliseconds."""

    window: int = 600
    cycles: int = 0
    overruns: int = 0
    _steps: dict[str, deque[float]] = field(default_factory=dict)

    def record(self, step_ms: Mapping[str, float], overrun: bool) -> None:
        self.cycles += 1
        self.overruns += int(overrun)
        for step, duration_ms in step_ms.items():
            self._steps.setdefault(step, deque(maxlen=self.window)).append(duration_ms)

    def summary(self) -> dict[str, object]:
        return {
            "cycles": self.cycles,
            "overruns": self.overruns,
            "steps_ms": {
                step: {
                    "last": round(durations[-1], 3),
                    "p50": round(percentile(durations, 0.5), 3),
                    "p99": round(percentile(durations, 0.99), 3),
                }
                for step, durations in self._steps.items()
            },
        }


# The pace follows the median need of the last few cycles: one slow cycle (a reconnect, a slow device, a
# collection) is an overrun, not a reason to slow every cycle after it.
PACE_WINDOW = 9
STRETCH_MARGIN = 1.2  # a stretched period leaves this much room above the median need, in whole steps
STRETCH_STEP_S = 0.01
CALM_FRACTION = 0.8  # the configured period comes back once the median need fits within this share of it


class Pace(enum.Enum):
    STRETCHED = "stretched"
    RESTORED = "restored"


@dataclass
class CyclePace:
    """The period the cycle runs at: the configured one, or longer while the work needs more.

    The need of a cycle is the time from when it was due to when its work ended. While the median need
    of the last `PACE_WINDOW` cycles exceeds the configured cycle, the period is that median plus a
    margin, so the cycles start on time and every request keeps its whole timeout; once the median fits
    well within the configured cycle again, the period goes back to it. `note` says when either happens
    (not when a stretched period moves), so the log says so once per episode."""

    cycle_s: float
    period_s: float = 0.0
    _needs: deque[float] = field(default_factory=lambda: deque(maxlen=PACE_WINDOW))

    def __post_init__(self) -> None:
        self.period_s = self.period_s or self.cycle_s

    @property
    def stretched(self) -> bool:
        return self.period_s > self.cycle_s

    @property
    def need_s(self) -> float:
        """The median need of the last cycles."""
        return percentile(self._needs, 0.5)

    def note(self, need_s: float) -> Pace | None:
        self._needs.append(need_s)
        median = self.need_s
        if len(self._needs) < PACE_WINDOW:
            return None
        if median > self.cycle_s:
            was_stretched = self.stretched
            self.period_s = self._fitting(median)
            return None if was_stretched else Pace.STRETCHED
        if not self.stretched:
            return None
        if median <= self.cycle_s * CALM_FRACTION:
            self.period_s = self.cycle_s
            return Pace.RESTORED
        self.period_s = max(self.cycle_s, self._fitting(median))
        return None

    @staticmethod
    def _fitting(need_s: float) -> float:
        return math.ceil(need_s * STRETCH_MARGIN / STRETCH_STEP_S) * STRETCH_STEP_S
