"""The rate limit of repeated log lines: per key, LINES_PER_WINDOW lines per window, then one summary."""

from __future__ import annotations

import logging

from gateway.logbook import CrowdGate, RateLimitedLog, counters


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_each_key_gets_its_lines_per_window_then_one_summary() -> None:
    clock = Clock()
    written: list[tuple[int, str]] = []
    gate = RateLimitedLog(
        lambda level, text: written.append((level, text)), lines=3, window_s=60.0, clock=clock
    )
    before = counters()["suppressed_by_key"].get("test flapper", 0)
    for flip in range(100):
        gate.log("test flapper", logging.WARNING if flip % 2 == 0 else logging.INFO, f"flip {flip}")
        gate.log("test other", logging.INFO, "other")  # another key is not starved by the flapper
        clock.now += 0.1
    assert [text for _, text in written if text.startswith("flip")] == ["flip 0", "flip 1", "flip 2"]
    assert sum(text == "other" for _, text in written) == 3
    assert counters()["suppressed_by_key"]["test flapper"] - before == 97
    gate.sweep()  # 10 s into the window: nothing to summarize yet
    assert len(written) == 6
    clock.now += 55.0
    gate.sweep()
    assert written[6:] == [
        (logging.WARNING, "test flapper: suppressed 97 similar message(s) in the last 65 s"),
        (logging.INFO, "test other: suppressed 97 similar message(s) in the last 65 s"),
    ]
    gate.log("test flapper", logging.INFO, "a new window")
    gate.sweep()
    assert written[8:] == [(logging.INFO, "a new window")]


def test_a_crowd_speaking_at_once_gets_a_few_lines_a_second_and_a_count_of_the_rest() -> None:
    clock = Clock()
    written: list[tuple[int, str]] = []
    crowd = CrowdGate(
        lambda level, text: written.append((level, text)),
        crowd="test nodes",
        where="`socgw status`",
        lines=3,
        window_s=1.0,
        clock=clock,
    )
    before = counters()["suppressed_by_key"].get("test nodes (held back together)", 0)
    for node in range(50):  # a fleet started before its packs: every node's first line at once
        code = "E_MB_TIMEOUT" if node % 5 else "E_MB_CONN_REFUSED"
        crowd.emit(logging.WARNING, f"node pack-{node:02d} (127.0.0.1:502 unit 1): {code}: no answer")
    assert [text.split(" (")[0] for _, text in written] == ["node pack-00", "node pack-01", "node pack-02"]
    assert counters()["suppressed_by_key"]["test nodes (held back together)"] - before == 47
    crowd.sweep()  # the second is not over: nothing yet
    assert len(written) == 3
    clock.now += 1.0
    crowd.sweep()
    assert written[3] == (
        logging.WARNING,
        "47 more line(s) of test nodes held back in the last 1 s (E_MB_CONN_REFUSED ×9, E_MB_TIMEOUT ×38), "
        "so many at once; `socgw status` shows each",
    )
    crowd.emit(logging.INFO, "node pack-07: polling again (after E_MB_TIMEOUT)")  # a new second
    crowd.sweep()
    assert written[4:] == [(logging.INFO, "node pack-07: polling again (after E_MB_TIMEOUT)")]
