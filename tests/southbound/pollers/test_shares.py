"""Which nodes each poller owns: whole RS-485 lines, config order, about as many units each."""

from __future__ import annotations

import pytest

from gateway.config import NodeConfig
from gateway.profiles.loader import ProfileLibrary
from gateway.sim.scenario import DEFAULT_PROFILE
from gateway.southbound.pollers.shares import split_nodes
from tests.conftest import PROFILES

PROFILE = ProfileLibrary([PROFILES]).get(DEFAULT_PROFILE)


def tcp(name: str) -> NodeConfig:
    return NodeConfig(name, "10.0.0.1", 502 + int(name[1:]), 1, PROFILE)


def on_line(name: str, device: str, unit: int) -> NodeConfig:
    return NodeConfig(name, device, 502, unit, PROFILE, transport="serial")


def ids(shares: list[tuple[NodeConfig, ...]]) -> list[list[str]]:
    return [[node.node_id for node in share] for share in shares]


def test_modbus_tcp_nodes_are_cut_in_config_order_into_even_shares() -> None:
    nodes = [tcp(f"n{i}") for i in range(7)]
    assert ids(split_nodes(nodes, 2)) == [["n0", "n1", "n2", "n3"], ["n4", "n5", "n6"]]
    assert ids(split_nodes(nodes, 3)) == [["n0", "n1"], ["n2", "n3", "n4"], ["n5", "n6"]]
    assert ids(split_nodes(nodes, 7)) == [[f"n{i}"] for i in range(7)]
    assert ids(split_nodes(nodes, 1)) == [[f"n{i}" for i in range(7)]]


def test_a_line_stays_in_one_share_whatever_its_place_in_the_config() -> None:
    nodes = [
        tcp("n0"),
        on_line("a1", "/dev/ttyA", 1),
        tcp("n2"),
        on_line("a2", "/dev/ttyA", 2),
        on_line("b1", "/dev/ttyB", 1),
        on_line("a3", "/dev/ttyA", 3),
        tcp("n6"),
    ]
    shares = ids(split_nodes(nodes, 3))
    assert sorted(name for share in shares for name in share) == sorted(node.node_id for node in nodes)
    assert all(shares)
    assert sorted(len([name for name in share if name.startswith("a")]) for share in shares) == [0, 0, 3]


def test_every_share_gets_a_group_when_there_are_just_enough() -> None:
    nodes = [on_line(f"a{u}", "/dev/ttyA", u) for u in range(1, 6)] + [tcp("n9")]
    assert ids(split_nodes(nodes, 2)) == [["a1", "a2", "a3", "a4", "a5"], ["n9"]]
    with pytest.raises(ValueError, match="3 share"):
        split_nodes(nodes, 3)
