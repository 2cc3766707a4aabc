"""The updater against a real libiec61850 model: what it writes equals `read_publication` cycle after
cycle (stale and failed packs included), `stop` ends it between two logical devices even in the middle
of a large snapshot, a thread that cannot stop never has the model freed under it, and a gateway
process whose updater is slow or stuck still exits 0 on SIGTERM.

Slow and stuck writers are the real `ModelWriter`, delayed on the updater thread only: what takes
seconds per cycle at 1000 packs (libiec61850 scans every buffered report's dataset per changed value)
takes seconds here with a few hundred packs or a handful.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyiec61850.pyiec61850 as iec
import pytest

from gateway.balancer import BalancerParams, SiteCommand, dispatch
from gateway.config import SiteConfig
from gateway.fleet import FleetState, NodeState, Quality
from gateway.mapping.sources import NODE_SOURCES, NodeSource
from gateway.northbound.iec61850 import server as iec61850_server
from gateway.northbound.iec61850 import updater as iec61850_updater
from gateway.northbound.iec61850.model import BuiltModel, Publication, ValueKind
from gateway.northbound.iec61850.native import ModelWriter, address_of
from gateway.northbound.iec61850.plan import ModelPlan
from gateway.northbound.iec61850.server import RunningServer
from gateway.northbound.iec61850.settings import load_settings
from gateway.northbound.iec61850.stderr import NativeStderr
from gateway.northbound.iec61850.updater import (
    QUALITY_GOOD,
    QUALITY_INVALID,
    QUALITY_OLD,
    Updater,
    read_publication,
    snapshot_time_ms,
)
from gateway.sim.fleet import Endpoint
from gateway.sim.scenario import DEFAULT_PROFILE
from gateway.snapshot import CycleSnapshot
from tests.conftest import LOOPBACK, REPO, StartFleet, free_port, socgw_command
from tests.northbound.iec61850.helpers import iec_section
from tests.test_engine import site_config

pytestmark = pytest.mark.wire  # real stacks, sockets on loopback or child processes

UPDATER_THREAD = "socgw-iec61850-updater"
WALL = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
LARGE_FLEET = 300
DEVICE_DELAY_S = 0.02  # per logical device: 301 devices make a first cycle of ~6 s, past STOP_TIMEOUT_S


def unpolled_site(tmp_path: Path, packs: int, port: int) -> SiteConfig:
    """A site of `packs` packs on loopback ports nobody polls here (only the model is built from it)."""
    endpoints = [
        Endpoint(f"pack-{i:04d}", DEFAULT_PROFILE, "1.0.0", LOOPBACK, 20000 + i, 1) for i in range(packs)
    ]
    return site_config(tmp_path, endpoints, iec_section(port))


def node(node_id: str, cycle: int, quality: Quality = Quality.GOOD, age_s: float = 0.0) -> NodeState:
    if quality is Quality.FAILED:
        return NodeState(node_id, quality=quality, error_code="E_TIMEOUT", age_s=age_s)
    return NodeState(
        node_id,
        quality=quality,
        age_s=age_s,
        soc_pct=60.0 - cycle,
        soh_pct=97.0,
        capacity_wh=2000.0,
        voltage_v=51.2,
        current_a=2.0 + cycle,
        power_w=100.0 * (cycle + 1),
        temp_c=25.0,
        temp_max_c=27.0,
        charge_limit_w=1000.0,
        discharge_limit_w=1000.0,
        state="discharging",
    )


def cycle_snapshot(cycle: int, nodes: Sequence[NodeState]) -> CycleSnapshot:
    fleet = FleetState(tuple(nodes), timestamp_s=10.0 + cycle)
    command = SiteCommand(request_w=150.0 * (1 + cycle % 2))
    params = BalancerParams()
    decision = dispatch(fleet, command, params, None, 10.0 + cycle)
    wall = WALL + timedelta(seconds=cycle)
    return CycleSnapshot(cycle, wall, fleet, command, decision, params)


def plan_of(site: SiteConfig) -> ModelPlan:
    loaded = load_settings(site)
    assert loaded is not None
    return loaded[1]


@contextlib.contextmanager
def unstarted_server(plan: ModelPlan) -> Iterator[tuple[BuiltModel, int]]:
    """The plan's model and a (never started) server: enough for writes and report triggers."""
    model = BuiltModel(plan)
    server = iec.IedServer_create(model.model)
    try:
        yield model, address_of(server)
    finally:
        iec.IedServer_destroy(server)
        model.destroy()


class RecordingWriter(ModelWriter):
    """The real writer, remembering the last value written to each attribute."""

    def __init__(self, server_address: int) -> None:
        super().__init__(server_address)
        self.last: dict[int, float | bool | int] = {}

    def float(self, attribute: int, value: float) -> None:
        super().float(attribute, value)
        self.last[attribute] = value

    def boolean(self, attribute: int, value: bool) -> None:
        super().boolean(attribute, value)
        self.last[attribute] = value

    def int32(self, attribute: int, value: int) -> None:
        super().int32(attribute, value)
        self.last[attribute] = value

    def quality(self, attribute: int, bits: int) -> None:
        super().quality(attribute, bits)
        self.last[attribute] = bits

    def utc_ms(self, attribute: int, milliseconds: int) -> None:
        super().utc_ms(attribute, milliseconds)
        self.last[attribute] = milliseconds


def test_the_model_shows_what_read_publication_says_cycle_after_cycle(tmp_path: Path) -> None:
    ids = [f"pack-{i:04d}" for i in range(4)]
    # pack-0000 turns stale (its age grows, its values do not move), then fails, then comes back;
    # pack-0001 recovers from stale; pack-0002 comes up, turns stale without telemetry (offline), and
    # back; pack-0003 stays good and moves every cycle.
    stale_offline = NodeState(ids[2], quality=Quality.STALE, age_s=3.0)
    cycles: list[list[NodeState]] = [
        [
            node(ids[0], 0),
            node(ids[1], 0, Quality.STALE, 1.5),
            node(ids[2], 0, Quality.FAILED),
            node(ids[3], 0),
        ],
        [node(ids[0], 1), node(ids[1], 1), node(ids[2], 1), node(ids[3], 1)],
        [node(ids[0], 1, Quality.STALE, 0.7), node(ids[1], 1), stale_offline, node(ids[3], 2)],
        [node(ids[0], 1, Quality.STALE, 1.7), node(ids[1], 2), stale_offline, node(ids[3], 3)],
        [node(ids[0], 4, Quality.FAILED), node(ids[1], 2), node(ids[2], 4), node(ids[3], 4)],
        [node(ids[0], 5), node(ids[1], 5), node(ids[2], 5), node(ids[3], 5)],
    ]
    plan = plan_of(unpolled_site(tmp_path, len(ids), free_port()))
    with unstarted_server(plan) as (model, address):
        writer = RecordingWriter(address)
        updater = Updater(writer, model.publications)
        updater.write_fixed(model.fixed, WALL)
        sourced = [p for p in model.publications if p.spec.source is not None]
        by_reference = {p.reference: p for p in sourced}

        def model_shows(reference: str) -> tuple[float | bool | int | None, int, int]:
            publication = by_reference[reference]
            return (
                writer.last.get(publication.value_attribute),
                int(writer.last[publication.quality_attribute]),
                int(writer.last[publication.time_attribute]),
            )

        expected: dict[str, tuple[float | bool | int | None, int, int]] = {}  # value, quality, time of change
        for index, nodes in enumerate(cycles):
            snapshot = cycle_snapshot(index, nodes)
            changed = 0
            for publication in sourced:
                reading = read_publication(publication, snapshot)
                before = expected.get(publication.reference)
                value = written(publication, reading.value)
                if (
                    before is None
                    or reading.quality != before[1]
                    or (value is not None and moved(publication, before[0], value))
                ):
                    changed += 1
                    kept = before[0] if value is None and before is not None else value
                    expected[publication.reference] = (kept, reading.quality, reading.time_ms)
            assert updater.apply(snapshot) == changed, index
            for reference in by_reference:
                assert model_shows(reference) == expected[reference], (index, reference)
            if index == 3:  # both stale packs: old data stamped when read, unchanged since the last cycle
                read_ms = snapshot_time_ms(cycle_snapshot(2, cycles[2]))
                assert model_shows("SOCGWPACK_0000/ZBAT1.Soc") == (59.0, QUALITY_OLD, read_ms - 700)
                assert model_shows("SOCGWPACK_0002/ZBAT1.Soc")[1:] == (QUALITY_INVALID, read_ms - 3000)
                assert model_shows("SOCGWPACK_0002/ZBAT1.ComAlm") == (True, QUALITY_GOOD, read_ms)


def test_a_measured_value_moves_only_beyond_its_deadband(tmp_path: Path) -> None:
    plan = plan_of(unpolled_site(tmp_path, 1, free_port()))
    with unstarted_server(plan) as (model, address):
        writer = RecordingWriter(address)
        updater = Updater(writer, model.publications)
        updater.write_fixed(model.fixed, WALL)
        tmp = next(p for p in model.publications if p.reference == "SOCGWPACK_0000/ZBAT1.Tmp")
        assert tmp.spec.deadband == 0.5  # the shipped map's
        # (temperature, quality) each cycle → what the model shows; the deadband counts from the value
        # last written, so slow drift is published once it adds up.
        steps = (
            (25.0, Quality.GOOD, 25.0),
            (25.4, Quality.GOOD, 25.0),
            (25.6, Quality.GOOD, 25.6),
            (25.2, Quality.GOOD, 25.6),
            (25.2, Quality.STALE, 25.2),  # a change of quality is always published, with the value
            (25.0, Quality.STALE, 25.2),
        )
        for cycle, (temp_c, quality, shown) in enumerate(steps):
            state = replace(
                node("pack-0000", 0, quality, 0.3 if quality is Quality.STALE else 0.0), temp_c=temp_c
            )
            updater.apply(cycle_snapshot(cycle, [state]))
            assert writer.last[tmp.value_attribute] == shown, cycle
            expected_quality = QUALITY_OLD if quality is Quality.STALE else QUALITY_GOOD
            assert writer.last[tmp.quality_attribute] == expected_quality, cycle


def test_a_node_that_answered_before_its_snapshot_is_written_at_once_and_the_fleet_waits(
    tmp_path: Path,
) -> None:
    ids = ["pack-0000", "pack-0001"]
    plan = plan_of(unpolled_site(tmp_path, len(ids), free_port()))
    with unstarted_server(plan) as (model, address):
        writer = RecordingWriter(address)
        updater = Updater(writer, model.publications)
        updater.write_fixed(model.fixed, WALL)
        by_reference = {p.reference: p for p in model.publications if p.spec.source is not None}
        pack_soc = by_reference["SOCGWPACK_0000/ZBAT1.Soc"]
        fleet_soc = by_reference["SOCGWFLEET/ZBAT1.Soc"]
        assert updater.apply_nodes([node(ids[0], 0)], 0) == 0  # nothing before the first snapshot
        first = cycle_snapshot(0, [node(ids[0], 0), node(ids[1], 0)])
        updater.apply(first)
        fleet_before = writer.last[fleet_soc.value_attribute]
        arrived_ms = snapshot_time_ms(first) + 40
        answered = node(ids[0], 5)  # the next poll's answer, its snapshot still to come
        assert updater.apply_nodes([answered], arrived_ms) > 0
        assert writer.last[pack_soc.value_attribute] == answered.soc_pct
        assert writer.last[pack_soc.time_attribute] == arrived_ms
        assert writer.last[fleet_soc.value_attribute] == fleet_before  # fleet values wait for it
        later = cycle_snapshot(1, [answered, node(ids[1], 0)])
        updater.apply(later)
        assert writer.last[pack_soc.time_attribute] == arrived_ms  # shown already: not again
        assert writer.last[fleet_soc.value_attribute] == read_publication(fleet_soc, later).value


def test_a_source_that_fails_leaves_its_device_to_be_written_whole_next_cycle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failures = [RuntimeError("a bad value")]
    mode = NODE_SOURCES["node.mode"]

    def read_mode(snapshot: CycleSnapshot, state: NodeState) -> float | bool | None:
        if failures:
            raise failures.pop()
        return mode.read(snapshot, state)

    # The first read of a pack's balancer mode fails, after the pack's Soc and others were read.
    monkeypatch.setitem(NODE_SOURCES, "node.mode", NodeSource(mode.unit, mode.description, read_mode))
    plan = plan_of(unpolled_site(tmp_path, 1, free_port()))
    with unstarted_server(plan) as (model, address):
        writer = RecordingWriter(address)
        updater = Updater(writer, model.publications)
        updater.write_fixed(model.fixed, WALL)
        soc = next(p for p in model.publications if p.reference == "SOCGWPACK_0000/ZBAT1.Soc")
        snapshot = cycle_snapshot(0, [node("pack-0000", 0)])
        with pytest.raises(RuntimeError, match="a bad value"):
            updater.apply(snapshot)
        assert writer.last[soc.quality_attribute] == iec61850_updater.QUALITY_MISSING
        updater.apply(snapshot)  # the same values: written now all the same
        assert writer.last[soc.value_attribute] == 60.0
        assert writer.last[soc.quality_attribute] == QUALITY_GOOD


def written(publication: Publication, value: object) -> float | bool | int | None:
    """What the writer receives for a shown value (None: nothing was ever written)."""
    if value is None:
        return None
    assert isinstance(value, float | bool | int)
    if publication.kind is ValueKind.FLOAT:
        return float(value)
    if publication.kind is ValueKind.BOOL:
        return bool(value)
    return int(value)


def moved(publication: Publication, before: object, value: float | bool | int) -> bool:
    """Whether a known value differs from the one shown, by more than an MV's deadband."""
    deadband = publication.spec.deadband
    if deadband and isinstance(before, float) and isinstance(value, float):
        return abs(value - before) > deadband
    return value != before


class SlowWriter(ModelWriter):
    """The real writer, `DEVICE_DELAY_S` slower per logical device on the updater thread (`write_fixed`
    runs on the caller's); counts the devices the updater started writing."""

    devices = 0
    writing = threading.Event()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        with super().locked():
            if threading.current_thread().name == UPDATER_THREAD:
                SlowWriter.devices += 1
                if SlowWriter.devices == 3:
                    SlowWriter.writing.set()
                time.sleep(DEVICE_DELAY_S)
            yield


def updater_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == UPDATER_THREAD]


def test_stop_ends_a_large_snapshot_between_two_devices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    site = unpolled_site(tmp_path, LARGE_FLEET, free_port())
    loaded = load_settings(site)
    assert loaded is not None
    settings, plan = loaded
    monkeypatch.setattr(iec61850_server, "ModelWriter", SlowWriter)
    monkeypatch.setattr(SlowWriter, "devices", 0)
    monkeypatch.setattr(SlowWriter, "writing", threading.Event())
    running = RunningServer(settings, plan, lambda update, apply=True: None, WALL)
    try:
        nodes = [node(n.node_id, 0) for n in site.nodes]
        running.updater.offer(cycle_snapshot(0, nodes))  # the first cycle writes every device
        assert SlowWriter.writing.wait(10.0)
    finally:
        started = time.monotonic()
        running.close()
        stop_s = time.monotonic() - started
    assert stop_s < 1.0  # one device's writes, not the ~6 s of the snapshot
    assert 3 <= SlowWriter.devices < len(plan.devices)  # it left the snapshot in the middle
    assert updater_threads() == []
    assert NativeStderr._users == 0  # freed: the normal teardown ran
    assert "did not stop" not in caplog.text


class StuckWriter(ModelWriter):
    """The real writer, held on the updater thread before each device until the test releases it."""

    entered = threading.Event()
    release = threading.Event()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        if threading.current_thread().name == UPDATER_THREAD:
            StuckWriter.entered.set()
            StuckWriter.release.wait(30.0)
        with super().locked():
            yield


def test_a_thread_that_does_not_stop_keeps_the_model_it_writes_into(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    site = unpolled_site(tmp_path, 2, port)
    loaded = load_settings(site)
    assert loaded is not None
    settings, plan = loaded
    monkeypatch.setattr(iec61850_server, "ModelWriter", StuckWriter)
    monkeypatch.setattr(StuckWriter, "entered", threading.Event())
    monkeypatch.setattr(StuckWriter, "release", threading.Event())
    monkeypatch.setattr(iec61850_updater, "STOP_TIMEOUT_S", 0.3)
    running = RunningServer(settings, plan, lambda update, apply=True: None, WALL)
    try:
        running.updater.offer(cycle_snapshot(0, [node(n.node_id, 0) for n in site.nodes]))
        assert StuckWriter.entered.wait(10.0)
        with caplog.at_level(logging.ERROR, logger="gateway.northbound.iec61850"):
            running.close()
        assert "did not stop within" in caplog.text
        assert "left allocated (leaked)" in caplog.text
        [thread] = updater_threads()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((LOOPBACK, port))  # no longer served
        StuckWriter.release.set()  # the thread writes one more device into the kept model, then ends
        thread.join(10.0)
        assert not thread.is_alive()
    finally:
        StuckWriter.release.set()
        for thread in updater_threads():
            thread.join(10.0)
    running._teardown()  # what close() left: safe to free now that the thread has ended
    assert NativeStderr._users == 0


# `socgw run` with the real writer slowed on the updater thread of its IEC 61850 process: DELAY_S before
# each quality it writes (inside the data-model lock), and STOP_TIMEOUT_S as given. The adapter runs in a
# child process of `socgw run`, so the slowing goes in as a `sitecustomize` module on PYTHONPATH, acting
# only in that child. Prints a line at the first slowed write.
SLOWING = """
import os, sys, threading, time

if "gateway.northbound.process.child" in sys.orig_argv and "iec61850" in sys.orig_argv:
    from gateway.northbound.iec61850 import native as iec61850_lock
    from gateway.northbound.iec61850 import server as iec61850_server
    from gateway.northbound.iec61850 import updater as iec61850_updater

    delay_s = float(os.environ["TEST_DELAY_S"])
    iec61850_updater.STOP_TIMEOUT_S = float(os.environ["TEST_STOP_TIMEOUT_S"])
    started = threading.Event()

    class SlowWriter(iec61850_lock.ModelWriter):
        def quality(self, attribute, bits):
            if threading.current_thread().name == "socgw-iec61850-updater":
                if not started.is_set():
                    started.set()
                    print("test: updater writing", flush=True)
                time.sleep(delay_s)
            super().quality(attribute, bits)

    iec61850_server.ModelWriter = SlowWriter
"""
PACKS = 4  # 5 logical devices, ~20 data objects each


@pytest.mark.parametrize(
    ("delay_s", "stop_timeout_s", "leaked"),
    [
        (0.06, 5.0, False),  # a ~6 s first cycle: stopped between two devices, well before the timeout
        (60.0, 1.0, True),  # a thread that cannot stop: its model is left to it, and the process ends
    ],
)
def test_a_gateway_with_a_slow_updater_exits_0_on_sigterm(
    tmp_path: Path, start_sim_fleet: StartFleet, delay_s: float, stop_timeout_s: float, leaked: bool
) -> None:
    fleet = start_sim_fleet(packs=PACKS, speed=0.0)
    config = site_config(tmp_path, fleet.endpoints, iec_section(free_port()))
    slowing = tmp_path / "slowing"
    slowing.mkdir()
    (slowing / "sitecustomize.py").write_text(SLOWING)
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(slowing), str(REPO)]),
        "TEST_DELAY_S": str(delay_s),
        "TEST_STOP_TIMEOUT_S": str(stop_timeout_s),
    }
    process = subprocess.Popen(
        socgw_command("run", "-c", str(config.path)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        env=environment,
    )
    output: list[str] = []
    writing = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line.rstrip("\n"))
            if line.startswith("test: updater writing"):
                writing.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        assert writing.wait(30.0), output
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        returncode = process.wait(30.0)
        stop_s = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(10.0)
    text = "\n".join(output)
    assert returncode == 0, text
    assert "northbound iec61850 (pid" in text and "stopped: exited with status 0" in text, text  # not SIGSEGV
    assert stop_s < (stop_timeout_s + 4.0 if leaked else stop_timeout_s - 1.0), text
    assert ("did not stop within" in text) is leaked, text
    assert ("left allocated (leaked)" in text) is leaked, text
    assert "stopped cleanly" in text
