"""Who may enter: the allow-list, and the connection rate per source address (a token bucket each)."""

from __future__ import annotations

from collections import OrderedDict

from gateway.northbound.section import Admission

MAX_SOURCES = 4096  # buckets kept; the least recently seen source is forgotten first
BURST_MIN = 5


class Gate:
    """`refusal(address, now)`: None to let the connection in, else the reason it is refused."""

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self._rate = admission.connects_per_min / 60.0
        self._burst = max(BURST_MIN, admission.connects_per_min // 6)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, when

    def refusal(self, address: str, now: float) -> str | None:
        if not self._admission.allows(address):
            return "not-allowed"
        tokens, then = self._buckets.pop(address, (float(self._burst), now))
        tokens = min(float(self._burst), tokens + (now - then) * self._rate)
        if tokens < 1.0:
            self._buckets[address] = (tokens, now)
            return "rate"
        self._buckets[address] = (tokens - 1.0, now)
        while len(self._buckets) > MAX_SOURCES:
            self._buckets.popitem(last=False)
        return None
