"""Helpers for the southbound tests: run a coroutine on uvloop, build variants of shipped profiles."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

import uvloop

from gateway.profiles.model import Point, Profile, Variant, VersionRange
from gateway.sim.fleet import Endpoint
from gateway.southbound.session import ModbusSession, SessionOptions
from gateway.southbound.writer import WriteOutcome

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return uvloop.run(coroutine)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def with_point(profile: Profile, name: str, **changes: Any) -> Profile:
    """`profile` with point `name` changed in every variant that has it."""

    def changed(variant: Variant) -> Variant:
        if name not in variant.points:
            return variant
        point: Point = dataclasses.replace(variant.points[name], **changes)
        return dataclasses.replace(variant, points={**variant.points, name: point})

    return dataclasses.replace(profile, variants=tuple(changed(v) for v in profile.variants))


def with_firmware_ranges(profile: Profile, *ranges: VersionRange) -> Profile:
    """`profile` with its variants' firmware ranges replaced, in order."""
    variants = tuple(
        dataclasses.replace(v, firmware=r) for v, r in zip(profile.variants, ranges, strict=True)
    )
    return dataclasses.replace(profile, variants=variants)


# Request timeout for tests: the simulator shares this machine (and, as a thread, this process's GIL)
# with the client, so a healthy answer can take longer than the 80 ms a real 100 ms cycle allows.
TEST_TIMEOUT_S = 0.5


def session_for(
    endpoint: Endpoint,
    profile: Profile,
    *,
    node_id: str | None = None,
    unit: int | None = None,
    **options: Any,
) -> ModbusSession:
    options.setdefault("timeout_s", TEST_TIMEOUT_S)
    return ModbusSession(
        node_id or endpoint.pack_id,
        endpoint.host,
        endpoint.port,
        endpoint.unit_id if unit is None else unit,
        profile,
        options=SessionOptions(**options),
    )


# The two ways a session's writes go out: awaited (`send_writes`, a coroutine per unit) and driven by the
# answers' callbacks (`send_writes_soon`, what `write_all` uses for a unit with its connection to itself).
WRITE_PATHS = ("awaited", "callbacks")


async def write_by(
    path: str, session: ModbusSession, setpoints: Mapping[str, float], now: float
) -> list[WriteOutcome]:
    """`session.write_setpoints(setpoints, now)` through `path` (one of WRITE_PATHS)."""
    plan = session.plan_writes(setpoints, now)
    if path == "awaited" or plan.idle:
        return await session.send_writes(plan, now)
    finished: asyncio.Future[list[WriteOutcome]] = asyncio.get_running_loop().create_future()
    assert session.send_writes_soon(plan, now, finished.set_result), "the unit took the awaited path"
    return await asyncio.wait_for(finished, 10 * TEST_TIMEOUT_S)
