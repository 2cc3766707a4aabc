"""`socgw config schema` and `socgw map schema dnp3|iec61850` print the schemas the tests validate with."""

from __future__ import annotations

import json

import pytest

from gateway.cli import main
from gateway.commands.schema import config_schema, dnp3_map_schema, iec61850_map_schema


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["config", "schema"], config_schema),
        (["map", "schema", "dnp3"], dnp3_map_schema),
        (["map", "schema", "iec61850"], iec61850_map_schema),
    ],
)
def test_the_schema_commands_print_the_schemas(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: object
) -> None:
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert callable(expected) and printed == expected()
    assert printed["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_an_unknown_map_kind_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["map", "schema", "modbus"])
    assert raised.value.code == 2
    assert "invalid choice: 'modbus'" in capsys.readouterr().err
