"""The registry: sections checked without loading a protocol stack, and one port per listener."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config
from gateway.northbound.registry import check_sections
from tests.conftest import REPO

pytestmark = pytest.mark.wire  # real stacks, sockets on loopback or child processes

PACKAGED = REPO / "packaging" / "gateway.yaml"
STACKS = ("opendnp3", "pyiec61850")


@pytest.mark.parametrize(
    "argv",
    [
        ["validate", "-c", str(PACKAGED)],
        ["points", "--dnp3", "-c", str(PACKAGED)],
    ],
    ids=["validate", "points"],
)
def test_checking_a_config_loads_no_protocol_stack(argv: list[str]) -> None:
    script = (
        "import sys\n"
        "from gateway import cli\n"
        f"status = cli.main({argv!r})\n"
        f"loaded = sorted(m for m in sys.modules if m.startswith({STACKS!r}))\n"
        "print('LOADED', loaded, 'STATUS', status)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    assert "LOADED [] STATUS 0" in done.stdout, done.stdout + done.stderr


def test_two_sections_on_one_port_are_refused_at_their_lines(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "site: {name: ports}\n"
        "nodes: []\n"
        "northbound:\n"
        "  dnp3:\n"
        "    host: 0.0.0.0\n"
        "    port: 20000\n"
        "  iec61850:\n"
        "    host: 127.0.0.1\n"
        "    port: 20000\n"
    )
    with pytest.raises(ConfigError) as refused:
        check_sections(load_config(config))
    [problem] = refused.value.problems
    assert (problem.mark.line, problem.mark.column) == (9, 11)
    assert "port 20000, which northbound.dnp3 already uses" in problem.message
    assert f"{config}:6:11" in problem.message


def test_the_same_port_on_different_addresses_is_fine(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "site: {name: ports}\nnodes: []\nnorthbound:\n"
        "  dnp3: {host: 127.0.0.1, port: 20000}\n"
        "  iec61850: {host: 127.0.0.2, port: 20000}\n"
    )
    check_sections(load_config(config))
