"""`socgw profile validate` and `socgw profile schema`, run in-process through gateway.cli.main."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.cli import main
from tests.conftest import REPO as ROOT

PROFILES = ROOT / "profiles"

GOOD = """\
vendor: acme
model: box
profile_version: "1.0.0"
identify:
  registers:
    firmware: {address: 0, type: str, length: 4}
common:
  soc_pct: {address: 10, type: u16, unit: "%"}
  power_w: {address: 11, type: i16}
  setpoint_w: {address: 12, type: i16, access: rw, min: -100, max: 100}
"""


def test_validate_shipped_profiles_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "validate", str(PROFILES)]) == 0
    out = capsys.readouterr().out
    assert out.count(": ok (") == 3
    assert "rackcell/rbms-x 1.1.0, 2 variant(s)" in out


def test_validate_bad_profile_exits_1_with_file_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD, encoding="utf-8")
    bad = tmp_path / "nested" / "bad.yaml"
    bad.parent.mkdir()
    bad.write_text(
        GOOD.replace("vendor: acme", "vendor: acme2").replace("type: i16}", "type: i17}", 1), encoding="utf-8"
    )
    assert main(["profile", "validate", str(tmp_path)]) == 1  # a directory: every *.yaml below it
    captured = capsys.readouterr()
    assert f"{good}: ok (acme/box 1.0.0" in captured.out
    assert f"{bad}:9:32: unknown type 'i17' for power_w (did you mean `i16`?)" in captured.out
    assert "1 problem(s) in 1 file(s)" in captured.err


def test_validate_reports_duplicate_keys_and_missing_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(GOOD, encoding="utf-8")
    second.write_text(GOOD, encoding="utf-8")
    assert main(["profile", "validate", str(first), str(second)]) == 1
    assert f"{second}:1:1: acme/box is also defined by {first}" in capsys.readouterr().out
    assert main(["profile", "validate", str(tmp_path / "missing.yaml")]) == 1
    assert "cannot read the file" in capsys.readouterr().out
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["profile", "validate", str(empty)]) == 1
    assert "no profile files found" in capsys.readouterr().err


def test_schema_command_prints_the_committed_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "schema"]) == 0
    out = capsys.readouterr().out
    assert out == (PROFILES / "profile.schema.json").read_text(encoding="utf-8")
    schema = json.loads(out)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert "soc_pct" in schema["$defs"]["registers"]["properties"]
