"""Cycle timing statistics: per-step durations, percentiles and overruns, kept in a bounded window."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


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
