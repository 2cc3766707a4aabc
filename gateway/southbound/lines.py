"""The units of one RS-485 line share one connection and take turns (see `line.py` for the plan).

`LineRegistry` is built once for a site: every session on an RTU transport joins it, gets the one
`ModbusLink` of its line (one pymodbus client per serial port or converter address; the link serializes
requests and keeps the line's inter-frame silence) and asks each cycle whether it is its turn. Turns go
round-robin, `units_per_cycle` units a cycle, as the plan of the line's members chooses; a unit that does
not answer spends only its own turn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.profiles.model import Profile
from gateway.southbound.errors import Target
from gateway.southbound.line import LineMember, LinePlan, plan_lines
from gateway.southbound.link import ModbusLink


@dataclass
class _Line:
    link: ModbusLink
    members: list[LineMember] = field(default_factory=list)
    plan: LinePlan | None = None
    cycle_now: float | None = None
    start: int = 0  # index of the first member whose turn it is this cycle


class LineRegistry:
    """The lines of one site (`cycle_s`: the control cycle the turns are counted in)."""

    def __init__(self, cycle_s: float, *, slow_every: int = 10) -> None:
        self.cycle_s = cycle_s
        self.slow_every = slow_every
        self._lines: dict[str, _Line] = {}

    def join(
        self, node_id: str, target: Target, profile: Profile, new_link: Callable[[], ModbusLink]
    ) -> ModbusLink:
        """Add a unit to its line; returns the line's link (made with `new_link` for the first unit)."""
        key = target.line
        if key is None:
            raise ValueError(f"{target} is on Modbus TCP: it shares no line")
        line = self._lines.get(key)
        if line is None:
            line = self._lines[key] = _Line(new_link())
        line.link.users += 1
        line.members.append(LineMember(node_id, target, profile))
        line.plan = None
        return line.link

    def plan(self, key: str) -> LinePlan:
        line = self._lines[key]
        if line.plan is None:
            (line.plan,) = plan_lines(line.members, self.cycle_s, slow_every=self.slow_every)
        return line.plan

    def place(self, key: str, node_id: str) -> int:
        """The unit's place on its line (0 for the first to join)."""
        return [member.node_id for member in self._lines[key].members].index(node_id)

    def my_turn(self, key: str, node_id: str, now: float) -> bool:
        """Whether `node_id` polls in the cycle stamped `now` (every session of a cycle passes the same)."""
        line = self._lines[key]
        plan = self.plan(key)
        count = len(plan.units)
        if line.cycle_now is None:
            line.cycle_now = now
        elif now != line.cycle_now:
            line.cycle_now = now
            line.start = (line.start + plan.units_per_cycle) % count
        return (plan.units.index(node_id) - line.start) % count < plan.units_per_cycle
