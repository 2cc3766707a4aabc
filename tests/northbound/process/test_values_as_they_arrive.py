"""Values published as they arrive: a pack's new SOC reaches SCADA before its cycle's snapshot.

`socgw run` serves DNP3, IEC 61850 and MQTT Sparkplug B (each in its own child process) from three
frozen simulated packs, one of which answers every request late, so each poll lasts long after the
fast packs have answered. A change of a fast pack's SOC moves the fleet's mean SOC too, and the mean
is published only with the cycle's snapshot, after the slowest pack has answered. On every protocol
the pack's new SOC must reach the client first, apart from the snapshot: a separate DNP3 unsolicited
response, an IEC 61850 report of the pack's device before the fleet's, a Sparkplug DDATA before the
NDATA. Ordering, not speed: what it takes in milliseconds is measured by a benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop
from dnp3.master import DefaultSOEHandler, Master, MasterConfig, MasterTcpRunner
from dnp3.master.handler import AnalogValue, ResponseInfo

from gateway.mapping.dnp3 import DEFAULT_MAP, PointType, load_dnp3_map
from gateway.mapping.dnp3 import find_map as find_dnp3_map
from gateway.mapping.iec61850 import find_map as find_iec_map
from gateway.mapping.iec61850 import load_map as load_iec_map
from gateway.northbound.mqtt.metrics import metric_table, quantity_deadbands
from gateway.profiles.loader import ProfileLibrary
from gateway.sim.fleet import FleetThread
from gateway.sim.scenario import DEFAULT_PROFILE, uniform_fleet
from tests.conftest import LOOPBACK, PROFILES, ephemeral_ports, free_port
from tests.northbound.dnp3.support import MASTER_ADDRESS, OUTSTATION_ADDRESS
from tests.northbound.iec61850.helpers import GatewayProcess, client_command
from tests.northbound.mqtt.support import Broker, Decoder, kind, metrics

PACKS = 3
FAST, SLOW = "pack-01", "pack-03"
SLOW_ANSWER_MS = 300  # per request of the slow pack: its poll ends long after the others'
WAIT_S = 30.0

pytestmark = pytest.mark.wire  # real stacks and clients, a broker, child processes


@dataclasses.dataclass
class Served:
    fleet: FleetThread
    gateway: GatewayProcess
    directory: Path
    dnp3_port: int
    iec_port: int
    broker: Broker

    def mean_soc_pct(self) -> float:
        return float(self.gateway.status()["fleet"]["mean_soc_pct"])

    def set_fast_soc(self, soc_pct: float) -> float:
        """Set the fast pack's SOC in the simulator; the fleet's mean SOC once the core has it."""
        before = self.mean_soc_pct()
        self.fleet.update_state(FAST, soc_pct=soc_pct)
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            nodes = {node["id"]: node for node in self.gateway.status()["nodes"]}
            if nodes[FAST]["soc_pct"] == pytest.approx(soc_pct, abs=0.01):
                mean = self.mean_soc_pct()
                assert abs(mean - before) > 1.0  # far beyond every protocol's deadband
                return mean
            time.sleep(0.05)
        raise AssertionError(f"the core did not see {FAST} at {soc_pct} % within {WAIT_S} s")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    directory = tmp_path_factory.mktemp("as-they-arrive")
    profile = ProfileLibrary([PROFILES]).get(DEFAULT_PROFILE)
    fleet = FleetThread(ephemeral_ports(uniform_fleet(PACKS, profile, base_port=0, speed=0.0)))
    fleet.start()
    broker = Broker(directory, free_port())
    try:
        dnp3_port, iec_port = free_port(), free_port()
        document = {
            "site": {"name": "arrive", "cycle_ms": 100},
            "nodes": [
                {
                    "id": e.pack_id,
                    "host": e.host,
                    "port": e.port,
                    "unit": e.unit_id,
                    "profile": e.profile_key,
                    **({"timeout_ms": 10 * SLOW_ANSWER_MS} if e.pack_id == SLOW else {}),
                }
                for e in fleet.endpoints
            ],
            "command": {"default_request_w": 0},
            "logging": {"level": "info", "balancing_log": None},
            "status": {"socket": str(directory / "status.sock")},
            "northbound": {
                "dnp3": {"host": LOOPBACK, "port": dnp3_port, "unsolicited": True},
                "iec61850": {"host": LOOPBACK, "port": iec_port},
                "mqtt": {
                    "brokers": [{"host": LOOPBACK, "port": broker.port}],
                    "group_id": "arrive",
                    "edge_node_id": "edge",
                },
            },
        }
        config = directory / "gateway.yaml"
        config.write_text(json.dumps(document))
        with GatewayProcess(config, directory / "status.sock", PACKS) as gateway:
            fleet.set_faults(SLOW, delay_ms=SLOW_ANSWER_MS)
            yield Served(fleet, gateway, directory, dnp3_port, iec_port, broker)
        assert gateway.stop() == 0, gateway.output
    finally:
        broker.stop()
        fleet.stop()


# --- DNP3 ----------------------------------------------------------------------------------------


class ResponseLog(DefaultSOEHandler):
    """Every analog input value decoded, with the number of the response that carried it."""

    def __init__(self) -> None:
        super().__init__()
        self.values: list[tuple[int, int, float]] = []  # (response number, index, value)
        self._responses = 0
        self._info: ResponseInfo | None = None

    def on_analog_input(self, values: list[AnalogValue], info: ResponseInfo) -> None:
        super().on_analog_input(values, info)
        if info is not self._info:
            self._info = info
            self._responses += 1
        self.values.extend((self._responses, value.index, value.value) for value in values)

    def first_response(self, index: int, value: float) -> int | None:
        return next((r for r, i, v in self.values if i == index and v == value), None)


def soc_points(served: Served) -> tuple[int, int]:
    """The analog inputs of the fast pack's SOC and of the fleet's mean SOC (0.1 %)."""
    dnp3_map = load_dnp3_map(find_dnp3_map(DEFAULT_MAP, served.directory))
    node_ids = [endpoint.pack_id for endpoint in served.fleet.endpoints]
    points = [point for point in dnp3_map.expand(node_ids) if point.type is PointType.ANALOG_INPUT]
    pack = next(p.index for p in points if p.node_id == FAST and p.spec.source == "node.soc_pct")
    fleet = next(p.index for p in points if p.spec.source == "fleet.mean_soc_pct")
    return pack, fleet


def test_a_packs_new_soc_reaches_the_dnp3_master_in_an_unsolicited_response_before_the_fleets(
    served: Served,
) -> None:
    pack_index, fleet_index = soc_points(served)
    handler = ResponseLog()
    master = Master(
        config=MasterConfig(address=MASTER_ADDRESS, outstation_address=OUTSTATION_ADDRESS), handler=handler
    )
    runner = MasterTcpRunner(master=master, host=LOOPBACK, port=served.dnp3_port, response_timeout=10.0)

    async def watch() -> tuple[int | None, int]:
        await runner.open()
        try:
            await runner.integrity_poll()
            await runner.enable_unsolicited()
            handler.values.clear()
            mean = await asyncio.to_thread(served.set_fast_soc, 20.0)
            deadline = time.monotonic() + WAIT_S
            while time.monotonic() < deadline:
                await runner.listen_unsolicited(timeout=0.2)
                fleet = handler.first_response(fleet_index, round(mean * 10))
                if fleet is not None:
                    return handler.first_response(pack_index, 200), fleet
            raise AssertionError(f"no event of the fleet's mean SOC: {handler.values}")
        finally:
            await runner.close()

    pack_response, fleet_response = uvloop.run(asyncio.wait_for(watch(), 2 * WAIT_S))
    assert pack_response is not None, handler.values
    assert pack_response < fleet_response, handler.values


# --- IEC 61850 -----------------------------------------------------------------------------------


@dataclasses.dataclass
class ReportWatch:
    """A libiec61850 client process with one report block enabled; each report stamped on arrival."""

    process: subprocess.Popen[str]
    reports: list[tuple[float, list[Any]]] = dataclasses.field(default_factory=list)
    ready: threading.Event = dataclasses.field(default_factory=threading.Event)

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            stamp = time.monotonic()
            with contextlib.suppress(ValueError):
                document = json.loads(line)
                if "ready" in document:
                    self.ready.set()
                elif document.get("values"):
                    self.reports.append((stamp, document["values"]))

    def first(self, position: int, value: float) -> float | None:
        """When the first report with `value` (±0.01) at dataset `position` arrived."""
        for stamp, values in list(self.reports):
            found = first_float(values[position])
            if found is not None and abs(found - value) <= 0.01:
                return stamp
        return None


def first_float(value: Any) -> float | None:
    """The number in a report member (an MV is [[mag.f], q, t])."""
    if isinstance(value, float):
        return value
    if isinstance(value, list) and value:
        return first_float(value[0])
    return None


@contextlib.contextmanager
def report_watch(port: int, rcb: str) -> Iterator[ReportWatch]:
    process = subprocess.Popen(
        client_command(port, "report", rcb, "--seconds", str(3 * WAIT_S)),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    watch = ReportWatch(process)
    reader = threading.Thread(target=watch.read, daemon=True)
    reader.start()
    try:
        assert watch.ready.wait(WAIT_S), f"the report client did not enable {rcb}"
        yield watch
    finally:
        process.kill()
        process.wait()
        reader.join(5)


def test_a_packs_new_soc_reaches_the_iec61850_client_in_its_report_before_the_fleets(
    served: Served,
) -> None:
    iec_map = load_iec_map(find_iec_map("default", served.directory))
    (fleet_set,) = [d for d in iec_map.fleet.datasets if d.name == "Fleet"]
    fleet_position = [(m.logical_node, m.data_object) for m in fleet_set.members].index(("ZBAT1", "Soc"))
    with (
        report_watch(served.iec_port, "SOCGWPACK_01/LLN0.RP.urcbMeas") as pack,
        report_watch(served.iec_port, "SOCGWFLEET/LLN0.RP.urcbFleet") as fleet,
    ):
        mean = served.set_fast_soc(30.0)
        deadline = time.monotonic() + WAIT_S
        while fleet.first(fleet_position, mean) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        fleet_at = fleet.first(fleet_position, mean)
        pack_at = pack.first(0, 30.0)  # ZBAT1.Soc leads the pack's dataset
    assert fleet_at is not None, fleet.reports
    assert pack_at is not None, pack.reports
    assert pack_at < fleet_at


# --- MQTT Sparkplug B ----------------------------------------------------------------------------


def test_a_packs_new_soc_reaches_the_sparkplug_host_in_ddata_before_the_fleets_ndata(served: Served) -> None:
    table = metric_table(quantity_deadbands(served.directory))
    (mean_metric,) = [spec.name for spec in table.node if spec.source == "fleet.mean_soc_pct"]
    (soc_metric,) = [spec.name for spec in table.device if spec.source == "node.soc_pct"]
    decoder = Decoder(served.broker.port, "spBv1.0/arrive/#")
    try:
        mean = served.set_fast_soc(40.0)
        order: list[str] = []
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            message = decoder.next(lambda _: True, WAIT_S)
            values = {name: metric.get("value") for name, metric in metrics(message).items()}
            if kind(message) == "DDATA" and message["topic"].endswith(f"/{FAST}"):
                if values.get(soc_metric) == pytest.approx(40.0, abs=0.01):
                    order.append("pack")
            elif kind(message) == "NDATA" and values.get(mean_metric) == pytest.approx(mean, abs=0.01):
                order.append("fleet")
                break
    finally:
        decoder.close()
    assert order == ["pack", "fleet"]
