"""The control table every adapter decides a master's write with: kinds, ranges, the point's bounds,
the rated power, and the site command each accepted write makes."""

from __future__ import annotations

import math

import pytest

from gateway.mapping.controls import (
    CONTROLS,
    MAP_TARGETS,
    Context,
    Refusal,
    RefusalKind,
    Target,
    ValueKind,
    decide,
)
from gateway.site_command import CommandUpdate

SCADA = Context("iec61850 127.0.0.1:5000", rated_power_w=3600.0, node_id=None)
PACK = Context("dnp3 master 1", rated_power_w=None, node_id="pack-02")
WIDE = (-1e4, 1e4)  # the bounds a map gives OutWSet in these cases


def refusal(outcome: CommandUpdate | Refusal) -> RefusalKind | None:
    return outcome.kind if isinstance(outcome, Refusal) else None


@pytest.mark.parametrize(
    ("target", "value", "bounds", "refused"),
    [
        (Target.REQUEST_W, 900.0, WIDE, None),
        (Target.REQUEST_W, -3600.0, WIDE, None),
        (Target.REQUEST_W, 3601.0, WIDE, RefusalKind.OUT_OF_RANGE),  # beyond the rated power
        (Target.REQUEST_W, 900.0, (0.0, 500.0), RefusalKind.OUT_OF_RANGE),  # beyond the point's max
        (Target.REQUEST_W, math.nan, WIDE, RefusalKind.OUT_OF_RANGE),
        (Target.REQUEST_W, math.inf, WIDE, RefusalKind.OUT_OF_RANGE),
        (Target.REQUEST_W, True, WIDE, RefusalKind.WRONG_KIND),
        (Target.RESERVE_PCT, 20.0, (None, None), None),
        (Target.RESERVE_PCT, 100.1, (None, None), RefusalKind.OUT_OF_RANGE),
        (Target.RESERVE_PCT, 100.1, (0.0, 1000.0), RefusalKind.OUT_OF_RANGE),  # a map cannot widen it
        (Target.CEILING_PCT, -0.5, (None, None), RefusalKind.OUT_OF_RANGE),
        (Target.REQUEST_PCT_RATED, 50.0, (-100.0, 100.0), None),
        (Target.REQUEST_PCT_RATED, 100.1, (-100.0, 100.0), RefusalKind.OUT_OF_RANGE),
        (Target.BALANCING_ENABLED, False, (None, None), None),
        (Target.BALANCING_ENABLED, 1.0, (None, None), RefusalKind.WRONG_KIND),
    ],
)
def test_a_write_is_refused_exactly_outside_its_kind_and_ranges(
    target: Target,
    value: float | bool,
    bounds: tuple[float | None, float | None],
    refused: RefusalKind | None,
) -> None:
    assert refusal(decide(target, value, SCADA, bounds)) is refused


def test_accepted_writes_become_the_site_commands_of_the_table() -> None:
    source = SCADA.source
    assert decide(Target.REQUEST_W, 900.0, SCADA) == CommandUpdate(source, request_w=900.0)
    assert decide(Target.REQUEST_PCT_RATED, 50.0, SCADA) == CommandUpdate(source, request_w=1800.0)
    assert decide(Target.RESERVE_PCT, 20.0, SCADA) == CommandUpdate(source, reserve_pct=20.0)
    assert decide(Target.CEILING_PCT, 90.0, SCADA) == CommandUpdate(source, ceiling_pct=90.0)
    assert decide(Target.BALANCING_ENABLED, False, SCADA) == CommandUpdate(source, balancing_enabled=False)
    assert decide(Target.CHARGE_DISCHARGE_ENABLED, False, SCADA) == CommandUpdate(
        source, charge_discharge_enabled=False
    )
    assert decide(Target.NODE_MAINTENANCE, True, PACK) == CommandUpdate(
        PACK.source, maintenance=("pack-02", True)
    )
    assert decide(Target.NODE_CALIBRATE, False, PACK) == CommandUpdate(
        PACK.source, calibrate=("pack-02", False)
    )


def test_a_share_of_an_unknown_rated_power_is_not_ready_but_watts_are_taken() -> None:
    assert refusal(decide(Target.REQUEST_PCT_RATED, 10.0, PACK)) is RefusalKind.NOT_READY
    assert decide(Target.REQUEST_W, 1e6, PACK) == CommandUpdate(PACK.source, request_w=1e6)


def test_a_per_pack_target_needs_a_pack() -> None:
    assert refusal(decide(Target.NODE_MAINTENANCE, True, SCADA)) is RefusalKind.NOT_READY


def test_every_target_has_one_kind_and_maps_name_all_but_the_share_of_rated_power() -> None:
    assert set(CONTROLS) == set(Target)
    assert set(MAP_TARGETS) == set(Target) - {Target.REQUEST_PCT_RATED}
    binary = {target for target, spec in CONTROLS.items() if spec.kind is ValueKind.BINARY}
    assert binary == {
        Target.CHARGE_DISCHARGE_ENABLED,
        Target.BALANCING_ENABLED,
        Target.NODE_MAINTENANCE,
        Target.NODE_CALIBRATE,
    }
