"""The simulator's split of points into computed-every-read and encoded-once follows the vocabulary."""

from __future__ import annotations

from gateway.profiles.vocabulary import CONSTANT_POINTS, VOCABULARY
from gateway.sim import physics, values
from gateway.sim.physics import PackState


def test_changing_quantities_are_computed_and_constant_ones_encoded_once() -> None:
    params = physics.default_params(2048.0, soh_pct=90.0)
    state = PackState(soc_pct=50.0, temp_c=25.0)
    dynamic = values.dynamic_values(params, state, physics.operating_point(params, state))
    static = values.static_values(params, "SIM00001", "MP2000")
    # `alarms` is the one dynamic point without a plain value: its bits come from `alarm_bits`.
    assert set(dynamic) | {"alarms"} == values.DYNAMIC_POINTS
    assert not values.DYNAMIC_POINTS & static.keys()
    assert VOCABULARY.keys() - CONSTANT_POINTS <= values.DYNAMIC_POINTS
    assert static.keys() & VOCABULARY.keys() == CONSTANT_POINTS - {"firmware"}  # firmware: per profile format
