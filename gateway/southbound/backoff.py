"""Reconnect pacing: capped exponential backoff with jitter. Pure (time and randomness are passed in)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delay before the next connect attempt after `failures` consecutive failures.

    The jitter (each delay drawn from [½·d, d]) keeps hundreds of sessions that lost their devices at the
    same moment (a switch reboot, a site power dip) from reconnecting in lockstep.
    """

    base_s: float = 0.1
    cap_s: float = 2.0
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0

    def next_delay_s(self) -> float:
        """Record one more failure and return how long to wait before the next attempt."""
        ceiling = min(self.cap_s, self.base_s * 2.0 ** min(self.failures, 32))
        self.failures += 1
        return ceiling * (0.5 + 0.5 * self.rng.random())

    def reset(self) -> None:
        self.failures = 0
