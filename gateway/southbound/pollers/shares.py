"""Which nodes each polling process owns. Pure.

The nodes of one RS-485 line share one link (the line registry of one process), so a line is never
split: the groups (a Modbus TCP node alone, or a whole line) go largest first to the share with the
fewest nodes, and each share keeps the config's order. Every process then polls about as many units.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.config import NodeConfig
from gateway.southbound.errors import Target
from gateway.southbound.transport import Transport


def line_of(node: NodeConfig) -> str | None:
    """The RS-485 line the node shares with others; None for a Modbus TCP node (its own)."""
    return Target(node.host, node.port, node.unit, Transport.named(node.transport, node.baud)).line


def split_nodes(nodes: Sequence[NodeConfig], count: int) -> list[tuple[NodeConfig, ...]]:
    """`count` shares of `nodes`, none empty (the config checks there are enough groups)."""
    groups: dict[str, list[int]] = {}
    for index, node in enumerate(nodes):
        groups.setdefault(line_of(node) or f"node {node.node_id}", []).append(index)
    if count < 1 or count > len(groups):
        raise ValueError(f"{count} share(s) of {len(groups)} group(s) of nodes")
    shares: list[list[int]] = [[] for _ in range(count)]
    for members in sorted(groups.values(), key=len, reverse=True):  # stable: config order among equals
        min(shares, key=len).extend(members)
    return [tuple(nodes[index] for index in sorted(share)) for share in shares]
