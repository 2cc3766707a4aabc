"""The cycle's pace: stretched while the work needs more than the cycle, said once, back when it fits; the
collector settled for a steady-state loop."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gateway.timing import GC_THRESHOLDS, PACE_WINDOW, CyclePace, Pace
from tests.conftest import REPO


def test_work_within_the_cycle_keeps_the_configured_period() -> None:
    pace = CyclePace(0.1)
    assert [pace.note(need) for need in (0.02, 0.09, 0.1) * PACE_WINDOW] == [None] * 3 * PACE_WINDOW
    assert pace.period_s == 0.1
    assert not pace.stretched


def test_one_slow_cycle_now_and_then_stretches_nothing() -> None:
    pace = CyclePace(0.1)
    for _ in range(5):
        assert [pace.note(need) for need in [0.04] * (PACE_WINDOW - 1) + [0.3]] == [None] * PACE_WINDOW
    assert not pace.stretched


def test_work_beyond_the_cycle_stretches_it_once_to_the_median_need() -> None:
    pace = CyclePace(0.1)
    changes = [pace.note(need) for need in [0.153, 0.16, 0.15] * PACE_WINDOW]
    assert changes.count(Pace.STRETCHED) == 1  # said once
    assert pace.need_s == 0.153
    assert pace.period_s == pytest.approx(0.19)  # the median need plus a fifth, in whole 10 ms
    assert [pace.note(0.3) for _ in range(PACE_WINDOW)] == [None] * PACE_WINDOW  # moves, not said again
    assert pace.period_s == pytest.approx(0.36)


def test_the_period_goes_back_once_the_work_fits_well_within_the_cycle() -> None:
    pace = CyclePace(0.1)
    for _ in range(PACE_WINDOW):
        pace.note(0.15)
    assert [pace.note(0.095) for _ in range(PACE_WINDOW)] == [None] * PACE_WINDOW  # fits, but barely
    assert pace.period_s == pytest.approx(0.12)  # still stretched, to what the work needs now
    changes = [pace.note(0.05) for _ in range(PACE_WINDOW)]
    assert changes.count(Pace.RESTORED) == 1
    assert pace.period_s == 0.1
    assert [pace.note(0.15) for _ in range(PACE_WINDOW)].count(Pace.STRETCHED) == 1  # a new episode


def test_a_settled_collector_leaves_what_lives_and_collects_the_young_seldom() -> None:
    # In a process of its own: this one's collector stays as pytest has it.
    probe = (
        "import gc, json\n"
        "from gateway.timing import settle_collector\n"
        "kept = [[index] for index in range(1000)]\n"
        "settle_collector()\n"
        "print(json.dumps([gc.get_freeze_count(), list(gc.get_threshold())]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO, timeout=60
    )
    frozen, threshold = json.loads(result.stdout)
    assert frozen >= 1000  # every object alive at the call, the 1000 lists with them
    assert threshold == list(GC_THRESHOLDS) and GC_THRESHOLDS[0] > 700
