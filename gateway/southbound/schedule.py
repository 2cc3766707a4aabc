"""Which read blocks one poll of a node sends: a bounded share of the cycle per node.

The fast blocks (SOC, power, limits, state, alarms) are read every poll; the slow ones (capacity, SOH,
read-backs) are due every `slow_every`-th poll. A device that answers quickly gets them all in that
poll, as before. A slow device would stretch that poll to one request time per block (a pack answering
in 50 ms: 4 blocks, 200 ms, every 10th cycle an overrun for the whole fleet), so the due slow blocks are
spread over the following polls: beside the fast blocks as many as fit in the budget (the request
timeout: what one node may take of a cycle) at the node's measured time per request, or, when not even
one fits beside them, one slow block alone in place of the fast blocks, every other poll: that poll's
reading carries the fast values of the poll before, as every fast poll carries the slow values. A write
due in the same cycle (the heartbeat) counts against the budget: when the fast blocks do not fit beside
it, that poll reads nothing and carries the values of the poll before. So a slow device's fast values are
at most two polls old. The first poll of a connection reads everything: every point needs a first value.

Pure: no I/O.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gateway.profiles.model import Point, Profile
from gateway.profiles.plan import ReadBlock, plan_reads
from gateway.profiles.vocabulary import FAST_POINTS


@dataclass(frozen=True)
class PollPlan:
    """What a node's polls read: `cyclic` points, in `full` blocks; `fast` the blocks read every poll."""

    cyclic: Mapping[str, Point]
    full: tuple[ReadBlock, ...]
    fast: tuple[ReadBlock, ...]

    @property
    def slow(self) -> tuple[ReadBlock, ...]:
        return tuple(block for block in self.full if block not in self.fast)


def poll_plan(profile: Profile, points: Mapping[str, Point]) -> PollPlan:
    """The polls of a node whose map in use is `points`.

    Identification registers are static: read once per connection, not every poll (unless a cyclic
    point needs one as its scale factor). The vocabulary says what the balancer and the northbound need
    fresh every cycle; the rest is read every `slow_poll_every`-th poll: for the mp2000 that is 1 request
    per cycle instead of 4, and requests are what a poll costs (see bench/poll_scale.py)."""
    identify = profile.identify.points
    scale_registers = {p.scale_register for p in points.values() if p.scale_register}
    cyclic = {
        name: point
        for name, point in points.items()
        if point.access.readable and (name not in identify or name in scale_registers)
    }
    fast = {name for name in cyclic if name in FAST_POINTS}
    fast |= {sf for name in fast if (sf := cyclic[name].scale_register) is not None}
    full = tuple(plan_reads(cyclic.values(), profile.comms))
    # Whole blocks of the full plan: leaving the slow points out of a block would cut it at every hole
    # (profiles rarely allow reading holes) and cost more requests, not fewer.
    fast_blocks = tuple(b for b in full if any(p.name in fast for p in b.points)) or full
    return PollPlan(cyclic, full, fast_blocks)


@dataclass(frozen=True)
class PollBlocks:
    blocks: tuple[ReadBlock, ...]
    slow: bool  # a slow block is among them (its scale register may sit in a block read earlier)
    complete: bool  # every block of the node's plan


class PollSchedule:
    """The blocks of each successive poll of one connection."""

    def __init__(
        self,
        fast: Sequence[ReadBlock],
        full: Sequence[ReadBlock],
        slow_every: int,
        budget_s: float,
        phase: int = 0,
    ) -> None:
        self._fast = tuple(fast)
        self._full = tuple(full)
        self._slow = tuple(block for block in full if block not in self._fast)
        self._slow_every = max(1, slow_every)
        self._budget_s = budget_s
        self._phase = phase % self._slow_every  # units sharing a line read their slow blocks in turn
        self._polls = 0
        self._due: deque[ReadBlock] = deque()
        self._swapped = False  # the last poll read a slow block (or nothing) instead of the fast ones
        self._skipped = False  # the last poll read nothing: the next one reads, whatever is due
        # Most polls: the fast blocks alone (made once, not per poll).
        self._fast_only = PollBlocks(self._fast, False, len(self._fast) == len(self._full))

    def next(self, request_s: float | None, writes: int = 0) -> PollBlocks:
        """The blocks for this poll, given the node's recent time per request (None: not known yet) and the
        writes due in the same cycle."""
        first = self._polls == 0
        if (self._polls + self._phase) % self._slow_every == 0 and not self._due:
            self._due.extend(self._slow)
        self._polls += 1
        if first:
            self._due.clear()
            return PollBlocks(self._full, bool(self._slow), True)

        def fits(requests: int) -> bool:
            return request_s is None or (requests + writes) * request_s <= self._budget_s

        if writes and not fits(len(self._fast)) and not self._skipped:  # the writes take this cycle's share
            self._skipped = self._swapped = True
            return PollBlocks((), False, False)
        self._skipped = False
        blocks = list(self._fast)
        while self._due and fits(len(blocks) + 1):
            blocks.append(self._due.popleft())
        swap = bool(self._due) and len(blocks) == len(self._fast) and not self._swapped
        self._swapped = swap
        if swap:
            return PollBlocks((self._due.popleft(),), True, False)
        if len(blocks) == len(self._fast):
            return self._fast_only
        return PollBlocks(tuple(blocks), True, len(blocks) == len(self._full))
