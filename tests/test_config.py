"""The site config: the shipped example is valid, and each kind of mistake is reported at its line."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from gateway.balancer import ChargeSource
from gateway.cli import main
from gateway.config import ConfigError, load_config
from tests.conftest import REPO

EXAMPLE = REPO / "examples" / "gateway.yaml"
PROFILE_DIRS = [REPO / "profiles"]

GOOD_NODES = """\
nodes:
  - { id: pack-01, host: 127.0.0.1, port: 15020, unit: 1, profile: microstore/mp2000 }
  - { id: pack-02, host: 127.0.0.1, port: 15021, unit: 1, profile: microstore/mp2000 }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, PROFILE_DIRS)
    return [str(problem) for problem in caught.value.problems]


def test_example_config_is_valid_and_complete() -> None:
    config = load_config(EXAMPLE, PROFILE_DIRS)
    assert [node.node_id for node in config.nodes] == ["pack-01", "pack-02", "pack-03", "pack-04"]
    assert all(node.profile.key == "microstore/mp2000" for node in config.nodes)
    assert config.cycle_ms == 100
    assert config.balancer.reserve_pct == 10
    assert config.command.charge_source is ChargeSource.PV
    assert config.logging.balancing_log == EXAMPLE.parent / "balancing.log"


def test_defaults_fill_everything_but_nodes(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD_NODES), PROFILE_DIRS)
    assert config.name == "site"
    assert config.command.timeout_s == 60
    assert config.command.safe_setpoint_w == 0
    assert config.logging.balancing_log is None
    assert config.balancer.ceiling_pct == 95
    assert math.isinf(config.balancer.ramp_w_per_s)


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (GOOD_NODES + "balancer:\n  reserv_pct: 10\n", ":5:3:", "did you mean `reserve_pct`"),
        (GOOD_NODES + "sitee: {}\n", ":4:1:", "did you mean `site`"),
        (GOOD_NODES.replace("microstore/mp2000 }\n", "microstore/mp200 }\n", 1), ":2:", "no profile"),
        (GOOD_NODES.replace("port: 15021", "port: 70000"), ":3:", "`port` must be a whole number 1..65535"),
        (GOOD_NODES.replace("pack-02", "pack-01"), ":3:", "used twice"),
        (GOOD_NODES.replace("port: 15021", "port: 15020"), ":3:", "same host, port and unit"),
        (GOOD_NODES + "balancer:\n  reserve_pct: 97\n", ":5:", "reserve_pct < ceiling_pct"),
        (GOOD_NODES + "command:\n  charge_source: grid\n", ":5:18:", "`charge_source` must be `pv`"),
        (GOOD_NODES + "site:\n  cycle_ms: 1\n", ":5:13:", "10..10000 ms"),
        ("nodes: {}\n", ":1:8:", "`nodes` must be a list"),
        (GOOD_NODES + "logging:\n  level: loud\n", ":5:10:", "`level` must be one of"),
        (GOOD_NODES.replace("unit: 1,", "unit: one,", 1), ":2:", "`unit` must be a whole number"),
        (GOOD_NODES + "nodes: []\n", ":4:1:", "duplicate key 'nodes'"),
    ],
    ids=[
        "misspelt-balancer-key",
        "misspelt-section",
        "unknown-profile",
        "port-out-of-range",
        "duplicate-id",
        "duplicate-endpoint",
        "reserve-above-ceiling",
        "bad-charge-source",
        "cycle-too-short",
        "no-nodes",
        "bad-log-level",
        "unit-not-integer",
        "duplicate-key",
    ],
)
def test_each_mistake_is_reported_at_its_line(tmp_path: Path, text: str, where: str, message: str) -> None:
    path = write(tmp_path, text)
    problems = problems_of(path)
    assert any(p.startswith(f"{path}{where}") and message in p for p in problems), problems


def test_every_problem_is_reported_not_just_the_first(tmp_path: Path) -> None:
    text = (
        GOOD_NODES.replace("port: 15021", "port: 0") + "balancer:\n  reserv_pct: 10\nlogging:\n  level: x\n"
    )
    assert len(problems_of(write(tmp_path, text))) == 3


def test_an_empty_fleet_is_valid_while_commissioning(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "nodes: []\n"), PROFILE_DIRS).nodes == ()


def test_validate_command_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "-c", str(EXAMPLE)]) == 0
    assert "valid" in capsys.readouterr().out
    bad = write(tmp_path, GOOD_NODES.replace("port: 15021", "port: 70000"))
    assert main(["validate", "-c", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:3:" in err
    assert "1 problem(s)" in err


def test_validate_shows_which_nodes_each_poller_owns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = RTU_NODES + "  - { id: d, host: 10.0.0.7, profile: microstore/mp2000 }\nsite:\n  pollers: 2\n"
    assert main(["validate", "-c", str(write(tmp_path, text))]) == 0
    out = capsys.readouterr().out
    assert "  poller 1: 2 node(s): a, b\n  poller 2: 2 node(s): c, d\n" in out


RTU_NODES = """\
nodes:
  - { id: a, transport: serial, device: /dev/ttyUSB0, baud: 19200, parity: E, unit: 1,
      profile: microstore/mp2000 }
  - { id: b, transport: serial, device: /dev/ttyUSB0, baud: 19200, parity: E, unit: 2,
      profile: microstore/mp2000 }
  - { id: c, transport: rtu-over-tcp, host: 10.0.0.9, port: 4001, unit: 1, profile: microstore/mp2000 }
"""


def test_rtu_transports_are_read_with_their_line_settings(tmp_path: Path) -> None:
    nodes = load_config(write(tmp_path, RTU_NODES), PROFILE_DIRS).nodes
    assert [(n.transport, n.host, n.unit, n.baud, n.parity, n.stop_bits) for n in nodes] == [
        ("serial", "/dev/ttyUSB0", 1, 19200, "E", 1),
        ("serial", "/dev/ttyUSB0", 2, 19200, "E", 1),
        ("rtu-over-tcp", "10.0.0.9", 1, 9600, "N", 1),
    ]


@pytest.mark.parametrize(
    ("node", "where", "message"),
    [
        ("{ id: a, transport: serial, unit: 1, profile: microstore/mp2000 }", ":2:5:", "needs `device`"),
        (
            "{ id: a, transport: serial, device: ttyUSB0, profile: microstore/mp2000 }",
            ":2:41:",
            "not a device path",
        ),
        ("{ id: a, host: 10.0.0.1, baud: 9600, profile: microstore/mp2000 }", ":2:30:", "needs transport"),
        ("{ id: a, transport: rs485, host: h, profile: microstore/mp2000 }", ":2:25:", "rtu-over-tcp"),
    ],
)
def test_rtu_node_mistakes_are_reported_at_their_place(
    tmp_path: Path, node: str, where: str, message: str
) -> None:
    problems = problems_of(write(tmp_path, f"nodes:\n  - {node}\n"))
    assert any(where in p and message in p for p in problems), problems


def test_nodes_on_one_line_must_share_its_settings(tmp_path: Path) -> None:
    text = RTU_NODES.replace("baud: 19200, parity: E, unit: 2", "baud: 9600, parity: E, unit: 2")
    problems = problems_of(write(tmp_path, text))
    assert any(":4:5:" in p and "shares its line with `a`" in p for p in problems), problems


def test_pollers_default_to_one_and_split_at_most_into_the_groups_that_can_poll_apart(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, GOOD_NODES), PROFILE_DIRS).pollers == 1
    assert load_config(write(tmp_path, GOOD_NODES + "site:\n  pollers: 2\n"), PROFILE_DIRS).pollers == 2
    assert load_config(write(tmp_path, "nodes: []\n"), PROFILE_DIRS).pollers == 1  # commissioning


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD_NODES + "site:\n  pollers: 0\n", "`pollers` must be a whole number >= 1, not 0"),
        (GOOD_NODES + "site:\n  pollers: -1\n", "`pollers` must be a whole number >= 1, not -1"),
        (GOOD_NODES + "site:\n  pollers: two\n", "`pollers` must be a whole number >= 1, not 'two'"),
        (GOOD_NODES + "site:\n  pollers: 3\n", "`pollers` is 3, more than the 2 group(s) of nodes"),
        # the two serial nodes share their line: with the converter's node, two groups, not three
        (
            RTU_NODES + "site:\n  pollers: 3\n",
            "more than the 2 group(s) of nodes that can poll apart (3 node(s)",
        ),
        ("nodes: []\nsite:\n  pollers: 2\n", "more than the 0 group(s)"),
    ],
    ids=["zero", "negative", "text", "more-than-nodes", "more-than-lines", "no-nodes"],
)
def test_a_wrong_pollers_count_is_reported_at_its_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    line = text.splitlines().index(next(row for row in text.splitlines() if "pollers" in row)) + 1
    problems = problems_of(path)
    assert any(p.startswith(f"{path}:{line}:12:") and message in p for p in problems), problems
