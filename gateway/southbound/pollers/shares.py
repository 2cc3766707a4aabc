"""Which nodes each polling process owns. Pure.

The nodes of one RS-485 line share one link (the line registry of one process), so a line is never
split. The groups (a Modbus TCP node alone, or a whole line) are cut in config order into shares of
about as many units each: poller 1 takes the first nodes, poller 2 the next, and so on.
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
    shares: list[list[int]] = [[]]
    placed = 0
    for position, members in enumerate(groups.values()):
        unopened = count - len(shares)
        boundary = len(nodes) * len(shares) / count  # where the current share should end
        past_it = placed + len(members) / 2 > boundary
        if shares[-1] and unopened and (past_it or len(groups) - position <= unopened):
            shares.append([])
        shares[-1].extend(members)
        placed += len(members)
    return [tuple(nodes[index] for index in sorted(share)) for share in shares]
