"""`socgw validate` prints each RS-485 line's computed poll time and schedule, and warns when a line cannot
keep its units within the balancer's telemetry age."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.cli import main


def _line_config(tmp_path: Path, units: int, baud: int, extra: str = "") -> Path:
    nodes = "\n".join(
        f"  - {{ id: p{i:02d}, transport: serial, device: /dev/ttyUSB0, baud: {baud}, unit: {i}, "
        "profile: microstore/mp2000 }"
        for i in range(1, units + 1)
    )
    path = tmp_path / "gateway.yaml"
    path.write_text(f"nodes:\n{nodes}\n{extra}")
    return path


def test_validate_prints_the_plan_of_twenty_units_at_9600_baud_and_warns(tmp_path: Path, capsys: Any) -> None:
    assert main(["validate", "-c", str(_line_config(tmp_path, 20, 9600))]) == 0
    out = capsys.readouterr().out
    assert "p20: /dev/ttyUSB0 (9600 baud 8N1) unit 20, profile microstore/mp2000" in out
    assert "line /dev/ttyUSB0 (9600 baud 8N1, 20 units): full poll" in out
    assert "round-robin: 1 of 20 units a cycle, each every 20 cycles" in out
    assert "telemetry age <= 2172 ms (fast)" in out
    assert "warning: line /dev/ttyUSB0 cannot keep its units' telemetry within" in out
    assert "max_telemetry_age_s to 2.2 s" in out


def test_a_line_that_meets_the_age_limit_gets_no_warning(tmp_path: Path, capsys: Any) -> None:
    config = _line_config(tmp_path, 4, 115200)
    assert main(["validate", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert "every unit every cycle (4 units)" in out
    assert "warning" not in out
