"""What the web view and the metrics remember between cycles: the SOC of every pack over the last hour,
the recent balancing decisions and faults, fault counts and cycle intervals. Pure: snapshots in,
plain data out (no I/O, no threads; the server calls it from its own thread).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.mapping.sources import read_node
from gateway.snapshot import CycleSnapshot

HISTORY_SPAN_S = 3600.0
SAMPLE_PERIOD_S = 5.0  # 720 points per pack for the hour
RECENT_EVENTS = 50
RECENT_INTERVALS = 600  # the last minute of 100 ms cycles, for p50/p99


@dataclass(frozen=True)
class Event:
    time: float  # Unix time of the cycle that saw it
    kind: str  # "decision" or "fault"
    node: str  # "" for the site
    text: str

    def as_json(self) -> dict[str, object]:
        return {"time": self.time, "kind": self.kind, "node": self.node, "text": self.text}


@dataclass
class _NodeMemory:
    mode: str | None = None
    codes: frozenset[str] = frozenset()


class History:
    """Fed every cycle's snapshot in order (`observe`); read by the view and the metrics."""

    def __init__(self, cycle_s: float) -> None:
        self.cycle_s = cycle_s
        self.samples: deque[tuple[float, dict[str, float | None]]] = deque()
        self.events: deque[Event] = deque(maxlen=RECENT_EVENTS)
        self.fault_counts: Counter[tuple[str, str]] = Counter()  # (node, code) -> times raised
        self.intervals_s: deque[float] = deque(maxlen=RECENT_INTERVALS)
        self.late_cycles = 0
        self._nodes: dict[str, _NodeMemory] = {}
        self._site_alarms: frozenset[str] = frozenset()
        self._request_w: float | None = None
        self._previous_start_s: float | None = None

    def observe(self, snapshot: CycleSnapshot) -> list[float]:
        """Take in one cycle; returns the cycle intervals it measured (for the histogram)."""
        measured = []
        if self._previous_start_s is not None:
            interval = snapshot.fleet.timestamp_s - self._previous_start_s
            measured.append(interval)
            self.intervals_s.append(interval)
            if interval > 1.5 * self.cycle_s:  # started half a cycle late or more
                self.late_cycles += 1
        self._previous_start_s = snapshot.fleet.timestamp_s
        now = snapshot.wall_time.timestamp()
        self._sample(snapshot, now)
        self._decisions(snapshot, now)
        return measured

    def _sample(self, snapshot: CycleSnapshot, now: float) -> None:
        if self.samples and now - self.samples[-1][0] < SAMPLE_PERIOD_S:
            return
        values = {}
        for node in snapshot.fleet.nodes:
            soc = read_node("node.soc_pct", snapshot, node)
            values[node.node_id] = float(soc) if isinstance(soc, int | float) else None
        self.samples.append((now, values))
        while self.samples and now - self.samples[0][0] > HISTORY_SPAN_S:
            self.samples.popleft()

    def _decisions(self, snapshot: CycleSnapshot, now: float) -> None:
        request = snapshot.command.request_w
        if self._request_w is not None and request != self._request_w:
            self._add(now, "decision", "", f"site request {self._request_w:.0f} W → {request:.0f} W")
        self._request_w = request
        site_alarms = frozenset(snapshot.dispatch.alarms)
        for code in sorted(site_alarms - self._site_alarms):
            self._add(now, "fault", "", f"{code} raised")
        for code in sorted(self._site_alarms - site_alarms):
            self._add(now, "fault", "", f"{code} cleared")
        self._site_alarms = site_alarms
        for node in snapshot.fleet.nodes:
            memory = self._nodes.setdefault(node.node_id, _NodeMemory())
            decision = snapshot.node_dispatch(node.node_id)
            mode = str(decision.mode) if decision is not None else None
            if mode != memory.mode and mode is not None:
                before = memory.mode or "start"
                self._add(now, "decision", node.node_id, f"mode {before} → {mode}")
            memory.mode = mode
            codes = frozenset(
                [
                    *(decision.alarms if decision is not None else ()),
                    *([node.error_code] if node.error_code else []),
                ]
            )
            for code in sorted(codes - memory.codes):
                self.fault_counts[(node.node_id, code)] += 1
                self._add(now, "fault", node.node_id, f"{code} raised")
            for code in sorted(memory.codes - codes):
                self._add(now, "fault", node.node_id, f"{code} cleared")
            memory.codes = codes

    def _add(self, now: float, kind: str, node: str, text: str) -> None:
        self.events.append(Event(now, kind, node, text))

    def interval_quantile_ms(self, quantile: float) -> float | None:
        if not self.intervals_s:
            return None
        ordered = sorted(self.intervals_s)
        return 1000.0 * ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]

    def series(self, node_ids: Iterable[str]) -> dict[str, object]:
        """The SOC history as columns: times and one list per node (None where unknown)."""
        ids = list(node_ids)
        return {
            "times": [time for time, _ in self.samples],
            "soc_pct": {node_id: [values.get(node_id) for _, values in self.samples] for node_id in ids},
        }
