"""The channel between the core and an adapter process, on real socket pairs: snapshot frames, the
newest-frame-wins feed, commands as JSON checked field by field, and a command the core never answers."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import threading
import time
from datetime import UTC, datetime

import pytest
import uvloop

from gateway.balancer import BalancerParams, ChargeSource, SiteCommand, dispatch
from gateway.fleet import FleetState, NodeState, Quality, node_from_values
from gateway.northbound.adapter import NodeUpdate
from gateway.northbound.process.channel import (
    FRAME_HEADER,
    NODES,
    SNAPSHOT,
    ChannelError,
    decode_frame,
    decode_nodes,
    decode_snapshot,
    encode_nodes,
    encode_snapshot,
    update_from_json,
    update_to_json,
)
from gateway.northbound.process.child import ANSWER_TIMEOUT_S, CoreLink
from gateway.northbound.process.supervisor import (
    NODE_BATCH_S,
    AdapterProcess,
    AdapterSupervisor,
    FrameFeed,
)
from gateway.site_command import CommandUpdate
from gateway.snapshot import CycleSnapshot
from gateway.supervision import decode_message, describe_exit, encode_message


def cycle(index: int, packs: int = 3) -> CycleSnapshot:
    nodes = tuple(
        NodeState(f"pack-{n:02d}", soc_pct=20.0 + n, capacity_wh=2000.0, discharge_limit_w=1200.0)
        for n in range(1, packs + 1)
    )
    fleet = FleetState(nodes, timestamp_s=index * 0.1)
    command = SiteCommand(request_w=900.0)
    decision = dispatch(fleet, command, BalancerParams(), None, index * 0.1)
    return CycleSnapshot(index, datetime.now(UTC), fleet, command, decision, BalancerParams(), 3600.0)


def test_a_snapshot_frame_carries_everything_an_adapter_reads_but_the_balancers_memory() -> None:
    snapshot = cycle(7)
    frame = encode_snapshot(snapshot)
    length, kind = FRAME_HEADER.unpack_from(frame)
    assert (length, kind) == (len(frame) - FRAME_HEADER.size, SNAPSHOT)
    copy = decode_snapshot(frame[FRAME_HEADER.size :])
    assert copy.fleet == snapshot.fleet
    assert copy.dispatch.nodes == snapshot.dispatch.nodes
    assert (copy.index, copy.wall_time, copy.command, copy.params) == (
        snapshot.index,
        snapshot.wall_time,
        snapshot.command,
        snapshot.params,
    )
    assert copy.node_dispatch("pack-02") == snapshot.node_dispatch("pack-02")
    assert copy.rated_power_w() == 3600.0
    assert snapshot.dispatch.memory.setpoints_w  # the core's memory holds every pack ...
    assert not copy.dispatch.memory.setpoints_w  # ... and stays in the core


def test_a_nodes_frame_carries_the_states_and_when_they_were_sent() -> None:
    states = cycle(1).fleet.nodes[:2]
    frame = encode_nodes(states, 1_700_000_000.25)
    length, kind = FRAME_HEADER.unpack_from(frame)
    assert (length, kind) == (len(frame) - FRAME_HEADER.size, NODES)
    update = decode_frame(kind, frame[FRAME_HEADER.size :])
    assert update == NodeUpdate(states, datetime.fromtimestamp(1_700_000_000.25, UTC))
    with pytest.raises(ChannelError, match="kind 7"):
        decode_frame(7, frame[FRAME_HEADER.size :])
    with pytest.raises(ChannelError, match="NODES"):
        decode_frame(NODES, encode_snapshot(cycle(1))[FRAME_HEADER.size :])


def test_every_command_field_survives_the_round_trip() -> None:
    updates = [
        CommandUpdate("dnp3 master 1 @ 127.0.0.1 AO1000 operate", request_w=600.0),
        CommandUpdate("iec61850", charge_source=ChargeSource.PV, balancing_enabled=False),
        CommandUpdate("x", maintenance=("pack-01", True), calibrate=("pack-02", False)),
        CommandUpdate("x", charge_discharge_enabled=True, reserve_pct=20.0, ceiling_pct=90.0),
    ]
    for update in updates:
        assert update_from_json(json.loads(encode_message(update_to_json(update)))) == update


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"request_w": 5}, "source"),
        ({"source": "x", "request_w": True}, "number"),
        ({"source": "x", "request_w": "600"}, "number"),
        ({"source": "x", "maintenance": ["pack-01"]}, "node id"),
        ({"source": "x", "charge_source": "wind"}, "charge source"),
        ({"source": "x", "balancing_enabled": 1}, "true or false"),
        ({"source": "x", "delete_everything": True}, "unknown command field"),
    ],
)
def test_a_malformed_command_is_refused_by_name(fields: dict[str, object], problem: str) -> None:
    with pytest.raises(ChannelError, match=problem):
        update_from_json(fields)


def test_a_busy_child_gets_the_newest_frame_and_the_loop_never_waits() -> None:
    core, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    size = 4 * core.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)  # far more than the socket holds
    frames = [bytes([number]) * size for number in range(10)]

    async def offer_all() -> float:
        feed = FrameFeed(core)
        slowest = 0.0
        for frame in frames:
            started = time.perf_counter()
            feed.offer_snapshot(frame)
            slowest = max(slowest, time.perf_counter() - started)
            await asyncio.sleep(0.01)  # cycles go on while the child reads nothing
        received = bytearray()
        reading = asyncio.get_running_loop().run_in_executor(None, read_until, child, 2 * size)
        while not reading.done():
            await asyncio.sleep(0.01)
        received += reading.result()
        feed.finish()
        assert bytes(received) == frames[0] + frames[-1]  # the one under way, then the newest
        feed.close()
        return slowest

    slowest = uvloop.run(asyncio.wait_for(offer_all(), timeout=30))
    assert slowest < 0.005
    child.close()


def test_node_frames_follow_their_snapshot_and_a_newer_snapshot_drops_those_still_waiting() -> None:
    core, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    size = 4 * core.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)  # far more than the socket holds
    first, second = b"S" * size, b"T" * 100
    node_frames = [bytes([number]) * 100 for number in range(5)]

    async def offer_all() -> bytes:
        feed = FrameFeed(core)
        feed.offer_snapshot(first)  # under way: the socket takes only part of it
        for frame in node_frames[:3]:
            feed.offer_nodes(frame)  # waiting behind it ...
        feed.offer_snapshot(second)  # ... until a newer snapshot, which carries their states
        for frame in node_frames[3:]:
            feed.offer_nodes(frame)
        expected = len(first) + len(second) + 2 * 100
        received = await asyncio.get_running_loop().run_in_executor(None, read_until, child, expected)
        feed.close()
        return received

    received = uvloop.run(asyncio.wait_for(offer_all(), timeout=30))
    assert received == first + second + node_frames[3] + node_frames[4]
    child.close()


def test_the_states_that_arrive_together_go_out_as_one_frame_and_the_snapshot_takes_the_rest() -> None:
    """One frame per batch; the snapshot takes the states still waiting; a state equal to the last
    snapshot's is not sent again."""
    core, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    child.settimeout(5.0)
    states = cycle(1, packs=4).fleet.nodes
    snapshot = cycle(2, packs=4)
    moved = dataclasses.replace(snapshot.fleet.nodes[1], soc_pct=80.0)

    async def arrive() -> None:
        supervisor = AdapterSupervisor("gateway.yaml", [], lambda update, *, apply=True: None)
        process = AdapterProcess("dnp3", "gateway.yaml", lambda update, *, apply=True: None)
        process._feed = FrameFeed(core)  # a child's end of the channel, without spawning one
        supervisor.children = [process]
        supervisor.node_arrived(states[0])
        supervisor.node_arrived(states[1])
        await asyncio.sleep(10 * NODE_BATCH_S)  # the batch went out
        supervisor.node_arrived(states[2])  # arrives, then its cycle's snapshot before its batch
        supervisor.publish(snapshot)
        await asyncio.sleep(10 * NODE_BATCH_S)
        supervisor.node_arrived(dataclasses.replace(snapshot.fleet.nodes[0]))  # the same values
        supervisor.node_arrived(moved)
        await asyncio.sleep(10 * NODE_BATCH_S)

    uvloop.run(asyncio.wait_for(arrive(), timeout=30))
    frames = []
    for _ in range(3):
        length, kind = FRAME_HEADER.unpack(read_until(child, FRAME_HEADER.size))
        frames.append(decode_frame(kind, read_until(child, length)))
    child.settimeout(0.2)
    with pytest.raises(TimeoutError):
        child.recv(1)  # nothing more: the third state went with the snapshot
    nodes, full, after = frames
    assert isinstance(nodes, NodeUpdate) and nodes.nodes == states[:2]
    assert isinstance(full, CycleSnapshot) and full.fleet == snapshot.fleet
    assert isinstance(after, NodeUpdate) and after.nodes == (moved,)
    core.close()
    child.close()


def test_the_first_answers_go_at_once_and_later_ones_at_most_one_frame_per_batch_time() -> None:
    """The first states of a poll go out once the loop has handled what is ready, without a timer;
    a state arriving right after a frame waits for the next, NODE_BATCH_S after the one before."""
    core, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    child.setblocking(False)
    states = cycle(1, packs=3).fleet.nodes
    readable: list[bool] = []

    def has_frame() -> bool:
        try:
            return bool(child.recv(65536, socket.MSG_PEEK))
        except BlockingIOError:
            return False

    async def arrive() -> None:
        supervisor = AdapterSupervisor("gateway.yaml", [], lambda update, *, apply=True: None)
        process = AdapterProcess("dnp3", "gateway.yaml", lambda update, *, apply=True: None)
        process._feed = FrameFeed(core)
        supervisor.children = [process]
        supervisor.node_arrived(states[0])
        supervisor.node_arrived(states[1])
        readable.append(has_frame())  # not yet: the loop has not had a turn
        await asyncio.sleep(0)
        readable.append(has_frame())  # out
        child.recv(65536)
        supervisor.node_arrived(states[2])
        await asyncio.sleep(0)
        readable.append(has_frame())  # waits: the last frame went less than NODE_BATCH_S ago
        await asyncio.sleep(3 * NODE_BATCH_S)
        readable.append(has_frame())

    uvloop.run(asyncio.wait_for(arrive(), timeout=30))
    assert readable == [False, True, False, True]
    core.close()
    child.close()


def read_until(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        assert chunk, "the feed closed early"
        chunks += chunk
    return bytes(chunks)


def test_a_command_the_core_never_answers_is_refused_within_the_timeout() -> None:
    child_end, core_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    link = CoreLink(child_end)
    link.start()
    started = time.monotonic()
    refusal = link.submit(CommandUpdate("dnp3 master 1", request_w=600.0))
    waited = time.monotonic() - started
    assert refusal == "the gateway core did not answer within 100 ms"
    assert ANSWER_TIMEOUT_S <= waited < ANSWER_TIMEOUT_S + 0.5
    sent = decode_message(core_end.recv(65536))
    assert sent["kind"] == "submit" and sent["update"] == {"source": "dnp3 master 1", "request_w": 600.0}
    core_end.close()  # the core is gone: a command is refused at once
    started = time.monotonic()
    assert link.submit(CommandUpdate("x")) == (
        "the gateway core cannot take commands now (its channel is closed or full)"
    )
    assert time.monotonic() - started < ANSWER_TIMEOUT_S
    child_end.close()


def test_an_answer_reaches_the_thread_that_asked() -> None:
    child_end, core_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    link = CoreLink(child_end)
    link.start()

    def core() -> None:
        for _ in range(2):
            asked = decode_message(core_end.recv(65536))
            refusal = None if asked["apply"] else "reserve above the ceiling"
            core_end.send(encode_message({"kind": "answer", "id": asked["id"], "refusal": refusal}))

    threading.Thread(target=core, daemon=True).start()
    assert link.submit(CommandUpdate("x", reserve_pct=95.0), apply=False) == "reserve above the ceiling"
    assert link.submit(CommandUpdate("x", reserve_pct=20.0)) is None
    child_end.close()
    core_end.close()


@pytest.mark.parametrize(
    ("returncode", "described"),
    [
        (0, "exited with status 0"),
        (1, "exited with status 1"),
        (-9, "killed by SIGKILL"),
        (-11, "killed by SIGSEGV"),
    ],
)
def test_an_exit_is_described_by_status_or_signal(returncode: int, described: str) -> None:
    assert describe_exit(returncode) == described


def test_a_node_state_from_the_fleet_builder_crosses_the_channel_field_by_field() -> None:
    # node_from_values fills the state's attributes in its own order, not the dataclass's
    state = node_from_values(
        "pack-01",
        {"soc_pct": 61.5, "power_w": -250.0, "charge_limit_w": 3000.0, "capacity_wh": 10_000.0},
        quality=Quality.GOOD,
    )
    (copy,) = decode_nodes(encode_nodes([state], 0.0)[FRAME_HEADER.size :]).nodes
    assert copy == state
    assert copy.charge_limit_w == 3000.0 and copy.quality is Quality.GOOD
