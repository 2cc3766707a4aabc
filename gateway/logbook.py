"""Rate-limited, aggregated log lines for messages that can repeat without end.

A fault that flaps, a cycle that overruns on and off, a peer that sends garbage: each would write a line
per event and bury everything else in the journal. A `RateLimitedLog` lets through at most
`LINES_PER_WINDOW` lines per key in a `WINDOW_S` window that starts at the key's first line, counts the
rest, and once the window is over writes one summary line "<key>: suppressed K similar messages in the
last T s" (with the key's next line, or at the next `sweep()`, which the engine calls every cycle). So a
key writes at most LINES_PER_WINDOW + 1 lines per window. The suppressed counts are process-wide and shown
by `socgw status`.

Many keys can also speak at once: hundreds of nodes failing together (a gateway started before its
packs, a switch that goes down) each have their first lines. A `CrowdGate` between those keys and the
journal lets through `CROWD_LINES_PER_S` lines a second across all of them, holds back the rest, and
writes one line a second saying how many it held back and of which fault codes.

Thread-safe: the DNP3 stack logs from its own thread.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypedDict

LINES_PER_WINDOW = 6
WINDOW_S = 60.0
CROWD_LINES_PER_S = 10
CROWD_WINDOW_S = 1.0

Emit = Callable[[int, str], None]  # (level, text): where the admitted lines and the summaries go

_suppressed: Counter[str] = Counter()
_suppressed_lock = threading.Lock()
_gates: weakref.WeakSet[RateLimitedLog | CrowdGate] = weakref.WeakSet()
_FAULT_CODE = re.compile(r"\bE_[A-Z0-9_]+\b")  # the first one a line names is the line's kind


class LogCounters(TypedDict):
    suppressed_lines: int
    suppressed_by_key: dict[str, int]


@dataclass
class _Window:
    started_s: float
    lines: int = 0
    suppressed: int = 0
    level: int = logging.NOTSET  # the highest level suppressed in this window


class RateLimitedLog:
    """Per key, at most `lines` lines per `window_s`; then one summary line per window."""

    def __init__(
        self,
        emit: Emit,
        *,
        lines: int = LINES_PER_WINDOW,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._emit = emit
        self._lines = lines
        self._window_s = window_s
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._pending: set[str] = set()  # keys with suppressed lines not yet summarized
        self._lock = threading.Lock()
        _gates.add(self)

    def log(self, key: str, level: int, text: str) -> None:
        """Write `text` unless `key` used up its lines in the current window (then count it)."""
        now = self._clock()
        with self._lock:
            summary = self._close_window(key, now)
            window = self._windows.get(key)
            if window is None:
                window = self._windows[key] = _Window(now)
            admitted = window.lines < self._lines
            if admitted:
                window.lines += 1
            else:
                window.suppressed += 1
                window.level = max(window.level, level)
                self._pending.add(key)
        if not admitted:
            with _suppressed_lock:
                _suppressed[key] += 1
        if summary is not None:
            self._emit(*summary)
        if admitted:
            self._emit(level, text)

    def sweep(self) -> None:
        """Write the summary of every window that is over."""
        # Nothing pending: most gates, most cycles (read without the lock: a key added meanwhile waits for
        # the next sweep).
        if not self._pending:
            return
        now = self._clock()
        with self._lock:
            summaries = [self._close_window(key, now) for key in sorted(self._pending)]
        for summary in summaries:
            if summary is not None:
                self._emit(*summary)

    def _close_window(self, key: str, now: float) -> tuple[int, str] | None:
        """End `key`'s window if it is over; its summary line when lines were suppressed in it."""
        window = self._windows.get(key)
        if window is None or now - window.started_s < self._window_s:
            return None
        del self._windows[key]
        self._pending.discard(key)
        if not window.suppressed:
            return None
        return (
            window.level,
            f"{key}: suppressed {window.suppressed} similar message(s) in the last "
            f"{now - window.started_s:.0f} s",
        )


class CrowdGate:
    """At most `lines` lines per `window_s` across every key that emits through it; the rest are held
    back, counted by the first fault code each names, and summed up in one line per window (with the
    next line, or at the next `sweep()`)."""

    def __init__(
        self,
        emit: Emit,
        *,
        crowd: str,
        where: str,
        lines: int = CROWD_LINES_PER_S,
        window_s: float = CROWD_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._emit = emit
        self._crowd = crowd  # who speaks through the gate, e.g. "nodes"
        self._where = where  # where what was held back is shown, e.g. "`socgw status`"
        self._lines = lines
        self._window_s = window_s
        self._clock = clock
        self._started_s = -math.inf
        self._passed = 0
        self._held: Counter[str] = Counter()
        self._level = logging.NOTSET  # the highest level held back in this window
        self._lock = threading.Lock()
        _gates.add(self)

    def emit(self, level: int, text: str) -> None:
        """Write `text` unless this window's lines are used up (then count it)."""
        now = self._clock()
        with self._lock:
            summary = self._close_window(now)
            if now - self._started_s >= self._window_s:
                self._started_s, self._passed = now, 0
            admitted = self._passed < self._lines
            if admitted:
                self._passed += 1
            else:
                code = _FAULT_CODE.search(text)
                self._held[code.group() if code else "other"] += 1
                self._level = max(self._level, level)
        if not admitted:
            with _suppressed_lock:
                _suppressed[f"{self._crowd} (held back together)"] += 1
        if summary is not None:
            self._emit(*summary)
        if admitted:
            self._emit(level, text)

    def sweep(self) -> None:
        """Write the summary of the window if it is over."""
        if not self._held:  # most cycles (read without the lock: a line held meanwhile waits)
            return
        with self._lock:
            summary = self._close_window(self._clock())
        if summary is not None:
            self._emit(*summary)

    def _close_window(self, now: float) -> tuple[int, str] | None:
        if not self._held or now - self._started_s < self._window_s:
            return None
        held, level = self._held, self._level
        self._held, self._level = Counter(), logging.NOTSET
        kinds = ", ".join(f"{code} ×{count}" for code, count in sorted(held.items()))
        return (
            level,
            f"{sum(held.values())} more line(s) of {self._crowd} held back in the last "
            f"{now - self._started_s:.0f} s ({kinds}), so many at once; {self._where} shows each",
        )


def emit_to(logger: logging.Logger) -> Emit:
    """An `Emit` writing to `logger` (the text is not a format string: it may hold a peer's bytes)."""

    def emit(level: int, text: str) -> None:
        logger.log(level, "%s", text)

    return emit


def sweep() -> None:
    """Write the summaries of every gate's finished windows (called once per control cycle)."""
    for gate in list(_gates):
        gate.sweep()


def add_suppressed(counts: Mapping[str, int]) -> None:
    """Count lines that another process of the gateway suppressed (an adapter's child process reports
    its own), so `socgw status` shows the whole service's."""
    with _suppressed_lock:
        _suppressed.update(counts)


def counters() -> LogCounters:
    """For `socgw status`: log lines suppressed since start, in total and per key."""
    with _suppressed_lock:
        by_key = dict(_suppressed)
    return {"suppressed_lines": sum(by_key.values()), "suppressed_by_key": by_key}
