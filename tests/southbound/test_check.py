"""`gateway.southbound.check`: how the profile check judges values, and what it reads from a device."""

from __future__ import annotations

import time

import pytest

from gateway.profiles.loader import ProfileLibrary
from gateway.profiles.model import DataType, Point, Profile, Table
from gateway.profiles.vocabulary import VOCABULARY
from gateway.southbound.check import PointCheck, Severity, assess, check_points
from tests.conftest import StartFleet
from tests.southbound.helpers import run, session_for, with_point

pytestmark = pytest.mark.wire  # real stacks, sockets on loopback or child processes

SUNSPEC = "sunspec/battery-802"


def test_values_are_judged_by_the_vocabularys_plausible_range() -> None:
    judged = 0
    for spec in VOCABULARY.values():
        point = Point(spec.name, Table.HOLDING, 0, DataType.F32, 2, unit=spec.unit)
        if spec.plausible is None:
            assert assess(point, 1e12) == (Severity.OK, "ok")
            continue
        low, high = spec.plausible
        assert assess(point, low) == (Severity.OK, "ok")
        assert assess(point, high) == (Severity.OK, "ok")
        for outside in (low - abs(low) - 1.0, high + abs(high) + 1.0):
            severity, verdict = assess(point, outside)
            assert severity is Severity.PROBLEM and f"plausible {low:g}..{high:g}" in verdict, spec.name
        judged += 1
    assert judged == 14


def test_a_scale_register_reading_as_its_sentinel_is_a_problem_for_the_points_it_scales(
    start_sim_fleet: StartFleet, profile_library: ProfileLibrary
) -> None:
    profile = profile_library.get(SUNSPEC)
    endpoint = start_sim_fleet(packs=1, profile=SUNSPEC, speed=0).endpoint("pack-01")

    async def checked(session_profile: Profile) -> dict[str, PointCheck]:
        session = session_for(endpoint, session_profile)
        await session.connect(time.monotonic())
        try:
            return {result.point.name: result for result in await check_points(session)}
        finally:
            await session.close()

    honest = run(checked(profile))
    assert honest["soc_pct"].severity is Severity.OK and honest["soc_sf"].severity is Severity.OK
    assert honest["soc_sf"].words is not None
    blind = with_point(profile, "soc_sf", sentinel=honest["soc_sf"].words[0])
    results = run(checked(blind))
    assert results["soc_sf"].severity is Severity.WARNING
    soc = results["soc_pct"]
    assert soc.severity is Severity.PROBLEM and "scale register 'soc_sf' is not implemented" in soc.verdict
    assert results["x_soc_max_pct"].severity is Severity.PROBLEM  # every point soc_sf scales
    assert results["voltage_v"].severity is Severity.OK
