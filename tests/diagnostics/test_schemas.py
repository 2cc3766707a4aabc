"""The JSON Schemas of the site config and the maps: they accept every shipped file, and a broken file is
refused both by the schema and by socgw (with file:line)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from gateway.commands.schema import config_schema, dnp3_map_schema, iec61850_map_schema
from gateway.diagnostics import load_yaml_file
from tests.conftest import REPO, socgw_command

pytestmark = pytest.mark.wire  # real stacks, sockets on loopback or child processes

CONFIGS = [REPO / "examples" / "gateway.yaml", REPO / "packaging" / "gateway.yaml"]
DNP3_MAPS = sorted((REPO / "mappings" / "dnp3").glob("*.yaml"))
IEC61850_MAPS = sorted((REPO / "mappings" / "iec61850").glob("*.yaml"))


def as_json(path: Path) -> Any:
    """The file as an editor's YAML language server hands it to the schema (keys become strings)."""
    return json.loads(json.dumps(load_yaml_file(path)))


def schema_errors(schema: dict[str, Any], path: Path) -> list[str]:
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{list(error.absolute_path)}: {error.message}" for error in validator.iter_errors(as_json(path))]


def test_every_shipped_map_is_listed() -> None:
    assert [p.name for p in DNP3_MAPS] == ["default.yaml", "large.yaml"]
    assert [p.name for p in IEC61850_MAPS] == ["default.yaml", "large.yaml"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.parent.name)
def test_the_config_schema_accepts_the_shipped_configs(path: Path) -> None:
    assert schema_errors(config_schema(), path) == []


@pytest.mark.parametrize("path", DNP3_MAPS, ids=lambda p: p.stem)
def test_the_dnp3_schema_accepts_the_shipped_maps(path: Path) -> None:
    assert schema_errors(dnp3_map_schema(), path) == []


@pytest.mark.parametrize("path", IEC61850_MAPS, ids=lambda p: p.stem)
def test_the_iec61850_schema_accepts_the_shipped_maps(path: Path) -> None:
    assert schema_errors(iec61850_map_schema(), path) == []


def validate(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        socgw_command("validate", "-c", str(config)), capture_output=True, text=True, timeout=60, check=False
    )


def test_a_broken_config_is_refused_by_the_schema_and_by_socgw(tmp_path: Path) -> None:
    text = (REPO / "examples" / "gateway.yaml").read_text(encoding="utf-8")
    broken = tmp_path / "gateway.yaml"
    broken.write_text(text.replace("  cycle_ms: 100 ", "  cycle_ms: 1   ", 1), encoding="utf-8")
    assert any(error.startswith("['site', 'cycle_ms']") for error in schema_errors(config_schema(), broken))
    result = validate(broken)
    assert result.returncode == 2
    line = text.splitlines().index(next(t for t in text.splitlines() if t.startswith("  cycle_ms:"))) + 1
    assert f"{broken}:{line}:13: `cycle_ms` must be a number 10..10000 ms, not 1" in result.stderr


@pytest.mark.parametrize(
    ("protocol", "schema", "edit", "message"),
    [
        ("dnp3", dnp3_map_schema, ("class: 1", "class: 7"), "`class` must be a whole number 0..3, not 7"),
        ("iec61850", iec61850_map_schema, ("map_version: 1.2.0", "map_version: 01.2.0"), "semantic version"),
    ],
)
def test_a_broken_map_is_refused_by_the_schema_and_by_socgw(
    tmp_path: Path, protocol: str, schema: Any, edit: tuple[str, str], message: str
) -> None:
    old, new = edit
    text = (REPO / "mappings" / protocol / "default.yaml").read_text(encoding="utf-8")
    assert old in text
    broken = tmp_path / "broken.yaml"
    broken.write_text(text.replace(old, new, 1), encoding="utf-8")
    assert schema_errors(schema(), broken)
    config = tmp_path / "gateway.yaml"
    config.write_text(f"nodes: []\nnorthbound:\n  {protocol}:\n    map: broken.yaml\n", encoding="utf-8")
    result = validate(config)
    assert result.returncode == 2
    line = next(number for number, row in enumerate(text.splitlines(), 1) if old in row)
    assert f"{broken}:{line}:" in result.stderr and message in result.stderr, result.stderr
