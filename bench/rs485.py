"""Units per RS-485 line: the line plan at 9600, 19200 and 115200 baud against what a line achieves.

    python -m bench.rs485 [--units 4 10 20] [--bauds 9600 19200 115200] [--cycles 40] [--json FILE]

Method: for each baud rate and unit count, N `microstore/mp2000` packs of the real simulator as units 1..N
of one serial line on a pseudo-terminal, answering after the time their frames take at that baud rate
(10 bits a character, 8N1). This process is the gateway side and uses what the engine uses: one
`ModbusSession` per unit sharing the line through a `LineRegistry`, `connect_all`, then `poll_all` every
100 ms paced on deadlines, measured after two rounds of turns (every unit's first turn reads everything).
Printed per line: the plan (full poll time, schedule, the age bound it states),
the physical floor (every unit's fast frames alone, back to back: no schedule can refresh every unit
faster), the largest telemetry age measured over the run and the readings that were not good; and per
baud rate the most units a line can carry within the balancer's default `max_telemetry_age_s` (0.4 s)
by the plan. Tests never assert speed; this prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import uvloop

from gateway.balancer import BalancerParams
from gateway.fleet import Quality
from gateway.profiles.loader import ProfileLibrary
from gateway.sim.fleet import FleetThread
from gateway.sim.scenario import uniform_fleet
from gateway.southbound.errors import Target
from gateway.southbound.line import LineMember, LinePlan, plan_lines, unit_load
from gateway.southbound.lines import LineRegistry
from gateway.southbound.poller import close_all, connect_all, poll_all
from gateway.southbound.session import ModbusSession, SessionOptions
from gateway.southbound.transport import SerialSettings, Transport, TransportKind

PROFILES = Path(__file__).resolve().parent.parent / "profiles"
PROFILE = "microstore/mp2000"
CYCLE_S = 0.1
MAX_UNITS = 64


@dataclass(frozen=True)
class LineResult:
    baud: int
    units: int
    full_poll_ms: float
    schedule: str
    planned_age_ms: float
    floor_age_ms: float  # every unit's fast frames alone, back to back
    measured_age_ms: float  # the oldest telemetry of a good reading over the run
    not_good: int  # readings of the run that were not good
    readings: int


def _plan(count: int, baud: int, library: ProfileLibrary, device: str = "/dev/line") -> LinePlan:
    profile = library.get(PROFILE)
    transport = Transport(TransportKind.SERIAL, SerialSettings(baud))
    members = [LineMember(f"u{i}", Target(device, 0, i, transport), profile) for i in range(1, count + 1)]
    (plan,) = plan_lines(members, CYCLE_S)
    return plan


def most_units(baud: int, max_age_s: float, library: ProfileLibrary) -> int:
    """The most units whose planned telemetry age stays within `max_age_s` (0: not even one)."""
    fitting = [n for n in range(1, MAX_UNITS + 1) if _plan(n, baud, library).meets(max_age_s)]
    return max(fitting, default=0)


def measure(count: int, baud: int, cycles: int, library: ProfileLibrary) -> LineResult:
    profile = library.get(PROFILE)
    transport = Transport(TransportKind.SERIAL, SerialSettings(baud))
    with FleetThread(uniform_fleet(count, profile, base_port=0, speed=1.0)) as fleet:
        line = fleet.run(fleet.fleet.open_line(baud=baud))
        plan = _plan(count, baud, library, line.device)
        registry = LineRegistry(CYCLE_S)
        sessions = [
            ModbusSession(
                f"u{unit}",
                line.device,
                0,
                unit,
                profile,
                options=SessionOptions(timeout_s=0.2, connect_timeout_s=2.0),
                transport=transport,
                lines=registry,
            )
            for unit in range(1, count + 1)
        ]

        async def run() -> tuple[float, int, int]:
            loop = asyncio.get_running_loop()
            await connect_all(sessions, loop.time())
            oldest, not_good, readings = 0.0, 0, 0
            deadline = loop.time()
            warm_up = 2 * plan.cycles_per_round  # every unit's first turn reads everything
            for cycle in range(warm_up + cycles):
                polled = await poll_all(sessions, loop.time())
                deadline += CYCLE_S
                await asyncio.sleep(max(0.0, deadline - loop.time()))
                if cycle < warm_up:
                    continue
                for reading in polled:
                    readings += 1
                    if reading.quality is Quality.GOOD:
                        oldest = max(oldest, reading.age_s)
                    else:
                        not_good += 1
            await close_all(sessions)
            return oldest, not_good, readings

        oldest, not_good, readings = uvloop.run(run())
    load = unit_load("u1", profile)
    return LineResult(
        baud,
        count,
        round(plan.full_poll_s * 1000, 1),
        f"{plan.units_per_cycle} a cycle, each every {plan.cycles_per_round} cycles",
        round(plan.fast_age_s * 1000, 1),
        round(count * load.fast.wire_s(SerialSettings(baud)) * 1000, 1),
        round(oldest * 1000, 1),
        not_good,
        readings,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--units", type=int, nargs="+", default=[4, 10, 20])
    parser.add_argument("--bauds", type=int, nargs="+", default=[9600, 19200, 115200])
    parser.add_argument("--cycles", type=int, default=40)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    library = ProfileLibrary([PROFILES])
    max_age_s = BalancerParams().max_telemetry_age_s
    print(f"{PROFILE} units on one RS-485 line (8N1), {CYCLE_S * 1000:g} ms cycle, {args.cycles} cycles each")
    print(
        "baud    units  full poll  schedule                         age: planned  floor  measured  not good"
    )
    results = []
    for baud in args.bauds:
        for count in args.units:
            result = measure(count, baud, args.cycles, library)
            results.append(result)
            print(
                f"{baud:<7} {count:>5}  {result.full_poll_ms:>7.0f} ms  {result.schedule:<32} "
                f"{result.planned_age_ms:>7.0f} ms {result.floor_age_ms:>5.0f} ms "
                f"{result.measured_age_ms:>6.0f} ms  {result.not_good}/{result.readings}",
                flush=True,
            )
    capacity = {baud: most_units(baud, max_age_s, library) for baud in args.bauds}
    for baud, units in capacity.items():
        print(
            f"{baud} baud: at most {units} units a line keep telemetry within {max_age_s:g} s (by the plan)"
        )
    if args.json is not None:
        args.json.write_text(
            json.dumps({"lines": [asdict(r) for r in results], "units_within_max_age": capacity}, indent=2)
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
