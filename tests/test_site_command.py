"""The site command in force: defaults, a master's request, its timeout, latched mode switches."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.balancer import BalancerParams, ChargeSource, SiteCommand
from gateway.site_command import CommandUpdate, SiteCommandState

DEFAULT = SiteCommand(request_w=0.0, charge_source=ChargeSource.PV)


def test_default_until_commanded() -> None:
    state = SiteCommandState(DEFAULT, timeout_s=60)
    assert state.current(0.0) == DEFAULT
    assert not state.commanded(0.0)


def test_commanded_request_reverts_after_timeout() -> None:
    state = SiteCommandState(DEFAULT, timeout_s=60)
    state.apply(CommandUpdate(source="test", request_w=5000.0), now_s=100.0)
    assert state.current(159.9).request_w == 5000.0
    assert state.commanded(160.0)
    assert state.current(160.1).request_w == 0.0
    state.apply(CommandUpdate(source="test", request_w=-2000.0), now_s=200.0)  # a refresh revives it
    assert state.current(250.0).request_w == -2000.0


def test_mode_switches_are_latched_and_survive_the_request_timeout() -> None:
    state = SiteCommandState(DEFAULT, timeout_s=1)
    state.apply(CommandUpdate(source="a", balancing_enabled=False, maintenance=("pack-02", True)), 0.0)
    state.apply(CommandUpdate(source="b", calibrate=("pack-03", True), charge_source=ChargeSource.AC), 0.5)
    later = state.current(1000.0)
    assert not later.balancing_enabled
    assert later.maintenance == frozenset({"pack-02"})
    assert later.calibrate == frozenset({"pack-03"})
    assert later.charge_source is ChargeSource.AC
    assert state.last_source == "b"
    state.apply(CommandUpdate(source="c", maintenance=("pack-02", False)), 2.0)
    assert state.current(2.0).maintenance == frozenset()


def test_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="timeout"):
        SiteCommandState(DEFAULT, timeout_s=0)


@given(
    request_w=st.floats(-1e6, 1e6),
    at=st.floats(0, 1e6),
    later=st.floats(0, 1e3),
    timeout=st.floats(0.1, 1e3),
)
def test_request_in_force_exactly_within_timeout(
    request_w: float, at: float, later: float, timeout: float
) -> None:
    state = SiteCommandState(DEFAULT, timeout_s=timeout)
    state.apply(CommandUpdate(source="p", request_w=request_w), at)
    now = at + later
    expected = request_w if now - at <= timeout else DEFAULT.request_w  # elapsed as the float sum gives it
    assert state.current(now).request_w == expected
    assert state.commanded(now) == (now - at <= timeout)


def test_reserve_and_ceiling_are_latched_and_checked_against_each_other() -> None:
    state = SiteCommandState(DEFAULT, timeout_s=60, params=BalancerParams(reserve_pct=10, ceiling_pct=95))
    state.apply(CommandUpdate(source="scada", reserve_pct=20.0), 0.0)
    state.apply(CommandUpdate(source="scada", ceiling_pct=90.0), 1.0)
    assert (state.params.reserve_pct, state.params.ceiling_pct) == (20.0, 90.0)
    assert state.params.thermal_delta_c == 5.0  # the rest stays the config's
    with pytest.raises(ValueError, match="reserve_pct"):
        state.apply(CommandUpdate(source="scada", reserve_pct=89.0, request_w=100.0), 2.0)  # 89 + 2 > 90
    assert (state.params.reserve_pct, state.params.ceiling_pct) == (20.0, 90.0)
    assert state.current(2.0).request_w == DEFAULT.request_w  # a refused update changes nothing at all


def test_charge_discharge_mode_off_holds_zero_and_keeps_the_request_written_meanwhile() -> None:
    state = SiteCommandState(DEFAULT, timeout_s=10)
    state.apply(CommandUpdate(source="a", request_w=800.0), 0.0)
    state.apply(CommandUpdate(source="a", charge_discharge_enabled=False), 1.0)
    assert state.current(1.0).request_w == 0.0
    state.apply(CommandUpdate(source="a", request_w=400.0), 2.0)  # held
    assert state.current(50.0).request_w == 0.0  # latched: no timeout while off
    assert state.commanded(50.0)
    state.apply(CommandUpdate(source="a", charge_discharge_enabled=True), 100.0)
    assert state.current(109.0).request_w == 400.0  # its timeout runs from the switch on
    assert state.current(110.5).request_w == DEFAULT.request_w


def test_check_says_why_a_limit_would_be_refused_and_changes_nothing() -> None:
    state = SiteCommandState(DEFAULT, timeout_s=60, params=BalancerParams(reserve_pct=10, ceiling_pct=90))
    assert state.check(CommandUpdate(source="scada", reserve_pct=80.0)) is None
    reason = state.check(CommandUpdate(source="scada", reserve_pct=89.0))
    assert reason is not None and "reserve_pct 89 % + reserve_hysteresis_pct 2 %" in reason
    assert "ceiling_pct 90 %" in reason
    assert state.params.reserve_pct == 10.0
