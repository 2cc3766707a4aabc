"""What the web view remembers (pure): an hour of SOC samples, decisions and faults, late cycles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.balancer import BalancerParams, SiteCommand, dispatch
from gateway.fleet import FleetState, NodeState, Quality
from gateway.northbound.web.history import HISTORY_SPAN_S, SAMPLE_PERIOD_S, History
from gateway.snapshot import CycleSnapshot

START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
CYCLE_S = 0.1


def snapshot(at_s: float, *, error: str | None = None, request_w: float = 0.0) -> CycleSnapshot:
    nodes = (
        NodeState("n1", soc_pct=60.0, capacity_wh=2000.0, discharge_limit_w=1000.0, charge_limit_w=1000.0),
        NodeState(
            "n2",
            quality=Quality.FAILED if error else Quality.GOOD,
            error_code=error,
            soc_pct=None if error else 40.0,
            capacity_wh=2000.0,
            discharge_limit_w=1000.0,
            charge_limit_w=1000.0,
        ),
    )
    fleet = FleetState(nodes, timestamp_s=at_s)
    command, params = SiteCommand(request_w=request_w), BalancerParams()
    decision = dispatch(fleet, command, params, None, at_s)
    return CycleSnapshot(
        round(at_s / CYCLE_S), START + timedelta(seconds=at_s), fleet, command, decision, params
    )


def test_samples_every_period_and_keeps_one_hour() -> None:
    history = History(CYCLE_S)
    for second in range(int(HISTORY_SPAN_S) + 600):  # 70 minutes, one cycle a second
        history.observe(snapshot(float(second)))
    series = history.series(["n1", "n2"])
    times = series["times"]
    assert isinstance(times, list)
    assert times[-1] - times[0] <= HISTORY_SPAN_S
    assert len(times) == int(HISTORY_SPAN_S / SAMPLE_PERIOD_S) + 1
    assert series["soc_pct"] == {"n1": [60.0] * len(times), "n2": [40.0] * len(times)}


def test_faults_and_decisions_are_recorded_once_per_change() -> None:
    history = History(CYCLE_S)
    history.observe(snapshot(0.0))
    history.observe(snapshot(0.1, error="E_MB_TIMEOUT"))
    history.observe(snapshot(0.2, error="E_MB_TIMEOUT"))  # the same fault: not counted again
    history.observe(snapshot(0.3))
    history.observe(snapshot(0.4, error="E_MB_TIMEOUT", request_w=500.0))
    # the device error and the balancer's alarm for it
    assert history.fault_counts == {("n2", "E_MB_TIMEOUT"): 2, ("n2", "E_NODE_OFFLINE"): 2}
    texts = [(event.node, event.text) for event in history.events]
    assert texts.count(("n2", "E_MB_TIMEOUT raised")) == 2
    assert ("n2", "E_MB_TIMEOUT cleared") in texts
    assert ("n2", "mode active → offline") in texts
    assert ("", "site request 0 W → 500 W") in texts
    assert history.series(["n2"])["soc_pct"] == {"n2": [40.0]}  # one sample: the period has not passed


def test_a_cycle_that_starts_half_a_cycle_late_is_counted() -> None:
    history = History(CYCLE_S)
    for at_s in (0.0, 0.1, 0.2, 0.36, 0.46):
        history.observe(snapshot(at_s))
    assert history.late_cycles == 1
    assert history.interval_quantile_ms(0.5) is not None
