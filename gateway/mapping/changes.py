"""Which published values changed, and which changes are worth reporting: one tracker, every protocol.

A slot is one published value (a DNP3 point, an IEC 61850 data object). `observe` compares what a
cycle shows with what was shown before:

    UNCHANGED  the same value and quality: nothing to publish
    QUIET      the value moved, but by no more than the slot's deadband since it was last reported
    REPORT     the first value, a change of quality, or a move beyond the deadband since the last report

DNP3 updates the static value on QUIET and makes an event on REPORT; IEC 61850 writes the model (which
reports it) only on REPORT, as 7-3 defines `mag` for a deadbanded measurement. The deadband is in the
slot's own unit (DNP3 counts, IEC 61850 engineering units); booleans move by 1.

Pure: no I/O, no threads. Sized once; slots are list positions, for speed (thousands a cycle).

`NodeInputs` says which nodes need reading at all: every node quantity is a function of the node's
state, its dispatch decision and the site's context (parameters, command; tests/northbound/dnp3/
test_points.py holds every `NODE_SOURCES` entry to that), so a node whose inputs equal those it was last
read with shows the same values. A node shown as its poll answered is not read again with the snapshot
that carries it, unless the new dispatch changed its decision.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

_NEVER = object()  # a value no slot shows


class Change(enum.IntEnum):
    UNCHANGED = 0
    QUIET = 1
    REPORT = 2


Shown = float | int | bool | None
_UNCHANGED, _QUIET, _REPORT = Change.UNCHANGED, Change.QUIET, Change.REPORT  # locals, for speed


class ChangeTracker:
    __slots__ = ("_deadbands", "_quality", "_reported", "_shown")

    def __init__(self, deadbands: Sequence[float]) -> None:
        self._deadbands = list(deadbands)
        self._shown: list[object] = [_NEVER] * len(self._deadbands)
        self._quality: list[object] = [None] * len(self._deadbands)
        self._reported: list[Shown] = [None] * len(self._deadbands)

    def observe(self, slot: int, value: Shown, quality: object) -> Change:
        """Record what slot `slot` shows this cycle; say how it changed."""
        shown = self._shown[slot]
        shown_quality = self._quality[slot]
        if value == shown and quality == shown_quality:
            return _UNCHANGED
        self._shown[slot] = value
        self._quality[slot] = quality
        reported = self._reported[slot]
        if (
            quality == shown_quality
            and shown is not _NEVER
            and value is not None
            and reported is not None
            and abs(value - reported) <= self._deadbands[slot]
        ):
            return _QUIET
        self._reported[slot] = value
        return _REPORT

    def forget(self, slot: int) -> None:
        """Forget what the slot shows: its next observation is a REPORT (a write that did not happen)."""
        self._shown[slot] = _NEVER
        self._quality[slot] = None
        self._reported[slot] = None


class NodeInputs:
    """What each node's published values were last read from."""

    __slots__ = ("_context", "_inputs")

    def __init__(self) -> None:
        self._context: object = _NEVER
        self._inputs: dict[str, object] = {}

    def context(self, context: object) -> None:
        """The site's context of the readings that follow: a new one makes every node's inputs new."""
        if context != self._context:
            self._context = context
            self._inputs.clear()

    def changed(self, node_id: str, inputs: object) -> bool:
        """Whether `inputs` differ from those `record`ed for the node, in the same context."""
        return self._inputs.get(node_id, _NEVER) != inputs

    def record(self, node_id: str, inputs: object) -> None:
        """The node's values were read (and shown) from `inputs`."""
        self._inputs[node_id] = inputs
