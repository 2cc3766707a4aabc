"""Where the engine's nodes live: what the control cycle polls and writes, whatever carries it.

The engine asks a `Fieldbus` for one `NodeState` per node each cycle and hands it the setpoints; it
does not know whether the sessions run in its own process (`LocalFieldbus`, the default), in polling
processes, or are whole clusters behind worker controllers. A fieldbus applies the site's own knowledge
of each node (`apply_node_config`) before the engine sees it, so every implementation says the same.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, Self

from gateway.config import NodeConfig, SiteConfig
from gateway.fleet import NodeState
from gateway.southbound.lines import LineRegistry
from gateway.southbound.poller import close_all, connect_all, poll_all, write_all
from gateway.southbound.reading import Reading
from gateway.southbound.session import ModbusSession, SessionOptions
from gateway.southbound.transport import Transport

# Called with each node's state as soon as its poll answered, before the others have (values published
# as they arrive); on the loop's thread, so it must return at once.
NodeArrived = Callable[[NodeState], None]


class Fieldbus(Protocol):
    """The nodes of one control cycle. No method raises for a node's fault: a node that cannot be
    reached is a failed NodeState, a write that fails is the session's to retry."""

    @property
    def node_ids(self) -> tuple[str, ...]:
        """Every node, in the order `poll` returns their states."""

    async def connect(self, now: float) -> Mapping[str, str]:
        """Connect and identify every node; why each one that is not ready is not (it keeps retrying)."""

    async def poll(self, now: float, arrived: NodeArrived | None = None) -> tuple[NodeState, ...]:
        """One state per node, in `node_ids` order; `arrived` is called with each as it comes."""

    async def write(self, setpoints: Mapping[str, Mapping[str, float]], now: float) -> None:
        """Write each node's setpoints (by node id; nodes without an entry still get their heartbeat)."""

    def writes_total(self) -> Mapping[str, int]:
        """Setpoint writes sent to each node since start (what `socgw status` and /metrics count)."""

    async def close(self) -> None:
        """Close every connection."""


def apply_node_config(state: NodeState, node: NodeConfig) -> NodeState:
    """The site's own knowledge on top of the device's: capacity override and power caps."""
    if node.capacity_wh is None and node.charge_limit_w is None and node.discharge_limit_w is None:
        return state  # the common case, for every node every cycle
    changes: dict[str, Any] = {}
    if node.capacity_wh is not None:
        changes["capacity_wh"] = node.capacity_wh
    for field_name, cap in (
        ("charge_limit_w", node.charge_limit_w),
        ("discharge_limit_w", node.discharge_limit_w),
    ):
        if cap is not None:
            reported = getattr(state, field_name)
            changes[field_name] = cap if reported is None else min(reported, cap)
    return dataclasses.replace(state, **changes) if changes else state


def build_sessions(config: SiteConfig, nodes: Sequence[NodeConfig] | None = None) -> list[ModbusSession]:
    """One session per node (of `nodes`, default every node of the site)."""
    lines = LineRegistry(config.cycle_ms / 1000.0)  # units on one RS-485 line share it and take turns
    return [
        ModbusSession(
            node.node_id,
            node.host,
            node.port,
            node.unit,
            node.profile,
            options=SessionOptions.for_node(node.timeout_ms),
            transport=Transport.named(node.transport, node.baud, node.parity, node.stop_bits),
            lines=lines,
            place=place,
        )
        for place, node in enumerate(config.nodes if nodes is None else nodes)
    ]


class LocalFieldbus:
    """Every node's Modbus session on this process's event loop."""

    def __init__(self, sessions: Sequence[ModbusSession], nodes: Mapping[str, NodeConfig]) -> None:
        self.sessions = list(sessions)
        self._configs = [nodes[session.node_id] for session in self.sessions]
        self._node_ids = tuple(session.node_id for session in self.sessions)

    @classmethod
    def from_config(cls, config: SiteConfig, nodes: Sequence[NodeConfig] | None = None) -> Self:
        chosen = config.nodes if nodes is None else nodes
        return cls(build_sessions(config, chosen), {node.node_id: node for node in chosen})

    @property
    def node_ids(self) -> tuple[str, ...]:
        return self._node_ids

    async def connect(self, now: float) -> Mapping[str, str]:
        failures = await connect_all(self.sessions, now)
        return {node_id: str(error) for node_id, error in failures.items()}

    async def poll(self, now: float, arrived: NodeArrived | None = None) -> tuple[NodeState, ...]:
        states: list[NodeState | None] = [None] * len(self.sessions)
        configs = self._configs

        def each(index: int, reading: Reading) -> None:
            state = states[index] = apply_node_config(reading.to_node_state(), configs[index])
            if arrived is not None:
                arrived(state)

        await poll_all(self.sessions, now, each)
        return tuple(state for state in states if state is not None)  # every one: poll_all waited for all

    async def write(self, setpoints: Mapping[str, Mapping[str, float]], now: float) -> None:
        await write_all(self.sessions, setpoints, now)

    def writes_total(self) -> Mapping[str, int]:
        return {session.node_id: session.writes.writes_total for session in self.sessions}

    async def close(self) -> None:
        await close_all(self.sessions)
