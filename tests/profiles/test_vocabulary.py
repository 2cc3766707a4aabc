"""The vocabulary is the one table of per-quantity facts: the lists the gateway works from derive from it."""

from __future__ import annotations

import dataclasses
from typing import Any

from gateway.profiles import vocabulary
from gateway.profiles.vocabulary import (
    VOCABULARY,
    PointSpec,
    Poll,
    fast_points,
    fleet_feeds,
    plausible_ranges,
)


def changed(name: str, **facts: Any) -> list[PointSpec]:
    """The vocabulary's specs with the facts of `name` changed."""
    return [dataclasses.replace(spec, **facts) if spec.name == name else spec for spec in VOCABULARY.values()]


def test_the_poll_rate_plausible_range_and_fleet_field_come_from_the_specs() -> None:
    specs = list(VOCABULARY.values())
    faster = changed("cycle_count", poll=Poll.FAST, plausible=(0.0, 1e5), fleet_field="cycles")
    slower = changed("soc_pct", poll=Poll.SLOW, plausible=None, fleet_field=None)
    assert "cycle_count" not in fast_points(specs) and "cycle_count" in fast_points(faster)
    assert "soc_pct" in fast_points(specs) and "soc_pct" not in fast_points(slower)
    assert "cycle_count" not in plausible_ranges(specs) and plausible_ranges(faster)["cycle_count"] == (
        0.0,
        1e5,
    )
    assert plausible_ranges(specs)["soc_pct"] == (0.0, 100.0) and "soc_pct" not in plausible_ranges(slower)
    assert fleet_feeds(faster)["cycle_count"] == "cycles" and "soc_pct" not in fleet_feeds(slower)
    assert fleet_feeds(specs)["enable"] == "enabled"


def test_the_lists_the_gateway_reads_are_the_tables_views() -> None:
    # The session's fast plan reads FAST_POINTS, the profile check judges by PLAUSIBLE (see
    # tests/southbound/test_check.py) and the fleet model fills NodeState from FLEET_FEEDS.
    assert fast_points(VOCABULARY.values()) == vocabulary.FAST_POINTS
    assert plausible_ranges(VOCABULARY.values()) == vocabulary.PLAUSIBLE
    assert fleet_feeds(VOCABULARY.values()) == vocabulary.FLEET_FEEDS
    assert {"soc_pct", "power_w", "state", "alarms"} <= vocabulary.FAST_POINTS
    assert "setpoint_w" not in vocabulary.FAST_POINTS  # what the gateway wrote is read back slowly


def test_every_required_point_feeds_the_fleet_and_constants_are_never_fast() -> None:
    for spec in VOCABULARY.values():
        assert not (spec.required and spec.fleet_field is None), spec.name
        assert not (spec.constant and spec.poll is Poll.FAST), spec.name
