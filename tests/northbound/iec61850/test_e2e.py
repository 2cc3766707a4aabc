"""The IEC 61850 server as SCADA sees it: `socgw run` as a process on the simulator (frozen physics, so
values are exact), and MMS clients each in their own process: libiec61850's own client and the
independent Rust implementation from PyPI (`iec61850`)."""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import iec61850
import pytest

from gateway.config import SiteConfig
from gateway.mapping.iec61850 import find_map, load_map
from gateway.northbound.iec61850.plan import device_name_for
from gateway.profiles.loader import ProfileLibrary
from gateway.sim.fleet import FleetThread
from gateway.sim.scenario import DEFAULT_PROFILE, uniform_fleet
from tests.conftest import PROFILES, ephemeral_ports, free_port, socgw_command
from tests.northbound.iec61850.helpers import (
    GatewayProcess,
    client_command,
    iec_section,
    run_client,
    run_rust_client,
    soc_references,
)
from tests.test_engine import site_config

pytestmark = pytest.mark.wire  # real stacks, sockets on loopback or child processes

PACKS = 4
SCL = "{http://www.iec.ch/61850/2003/SCL}"
REPORT_WAIT_S = 30.0
QUALITY_VALIDITY_MASK = 0b11
QUALITY_INVALID = 0b10


@dataclasses.dataclass
class Served:
    fleet: FleetThread
    config: SiteConfig
    gateway: GatewayProcess
    port: int

    def devices(self) -> list[str]:
        return ["SOCGWFLEET"] + [f"SOCGW{device_name_for(e.pack_id)}" for e in self.fleet.endpoints]


@contextlib.contextmanager
def serve(tmp_path: Path, packs: int, **settings: object) -> Iterator[Served]:
    """`packs` frozen simulated packs behind `socgw run` with the IEC 61850 server (`settings` added)."""
    profile = ProfileLibrary([PROFILES]).get(DEFAULT_PROFILE)
    fleet = FleetThread(ephemeral_ports(uniform_fleet(packs, profile, base_port=0, speed=0.0)))
    fleet.start()
    try:
        port = free_port()
        config = site_config(tmp_path, fleet.endpoints, iec_section(port, **settings))
        with GatewayProcess(Path(config.path), config.status_socket, packs) as gateway:
            yield Served(fleet, config, gateway, port)
        assert gateway.stop() == 0, gateway.output
    finally:
        fleet.stop()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(tmp_path_factory.mktemp("iec61850-e2e"), PACKS) as running:
        yield running


def test_libiec61850_client_reads_every_soc_equal_to_the_fleet_state(served: Served) -> None:
    status = served.gateway.status()
    values = run_client(served.port, "read", *soc_references(served.devices()))["values"]
    fleet_soc, fleet_quality = values[0], values[1]
    assert fleet_quality == 0
    assert fleet_soc == pytest.approx(status["fleet"]["mean_soc_pct"], rel=1e-6)
    for index, node in enumerate(status["nodes"]):
        soc, quality = values[2 + 2 * index], values[3 + 2 * index]
        assert quality == 0, node["id"]
        assert soc == pytest.approx(node["soc_pct"], rel=1e-6), node["id"]
        # and what the simulated pack itself holds (to the register's 0.1 % resolution)
        assert soc == pytest.approx(served.fleet.snapshot(node["id"]).state.soc_pct, abs=0.051)


def test_independent_client_browses_the_model_and_reads_the_same_values(served: Served) -> None:
    browsed = run_rust_client(served.port, "browse")
    listed = run_client(served.port, "browse")
    # the data objects of every logical node, as libiec61850's client lists the MMS variables
    expected: dict[str, dict[str, set[str]]] = {}
    for device, names in listed["variables"].items():
        for name in names:
            parts = name.split("$")
            expected.setdefault(device, {}).setdefault(parts[0], set())
            if len(parts) == 3 and parts[1] not in ("BR", "RP"):
                expected[device][parts[0]].add(parts[2])
    seen = {
        device: {node: set(objects) for node, objects in nodes.items()}
        for device, nodes in browsed["devices"].items()
    }
    assert seen == expected
    assert sorted(seen) == sorted(served.devices())
    for device in served.devices():
        blocks = browsed["blocks"][device]
        datasets = {name.rsplit(".", 1)[-1] for name in listed["datasets"] if name.startswith(f"{device}/")}
        assert set(blocks["DS"]) == datasets
        assert blocks["BR"] and blocks["RP"]
    targets = soc_references(served.devices())
    rust_values = run_rust_client(served.port, "read", *targets)["values"]
    own_values = run_client(served.port, "read", *targets)["values"]
    assert rust_values[0::2] == own_values[0::2]  # the SOC values, float for float
    assert set(rust_values[1::2]) == {"0000"}  # quality bit strings: good


def icd_model(path: Path) -> tuple[set[str], dict[str, list[str]], set[str]]:
    """MMS variables, dataset members and report blocks an ICD describes (walked from the file)."""
    root = ET.parse(path).getroot()
    templates = root.find(f"{SCL}DataTypeTemplates")
    assert templates is not None
    lnode_types = {t.get("id"): t for t in templates.iter(f"{SCL}LNodeType")}
    do_types = {t.get("id"): t for t in templates.iter(f"{SCL}DOType")}
    da_types = {t.get("id"): t for t in templates.iter(f"{SCL}DAType")}

    def components(prefix: str, element: ET.Element) -> Iterator[str]:
        yield prefix
        if element.get("bType") == "Struct":
            for bda in da_types[element.get("type")].iter(f"{SCL}BDA"):
                yield from components(f"{prefix}${bda.get('name')}", bda)

    ied = root.find(f"{SCL}IED")
    assert ied is not None
    variables: set[str] = set()
    datasets: dict[str, list[str]] = {}
    reports: set[str] = set()
    for device in ied.iter(f"{SCL}LDevice"):
        domain = f"{ied.get('name')}{device.get('inst')}"
        for node in [*device.iter(f"{SCL}LN0"), *device.iter(f"{SCL}LN")]:
            ln = f"{node.get('prefix', '')}{node.get('lnClass')}{node.get('inst')}"
            variables.add(f"{domain}/{ln}")
            for data_object in lnode_types[node.get("lnType")].iter(f"{SCL}DO"):
                for attribute in do_types[data_object.get("type")].iter(f"{SCL}DA"):
                    fc = f"{domain}/{ln}${attribute.get('fc')}"
                    variables |= {fc, f"{fc}${data_object.get('name')}"}
                    variables |= set(
                        components(f"{fc}${data_object.get('name')}${attribute.get('name')}", attribute)
                    )
            for dataset in node.iter(f"{SCL}DataSet"):
                datasets[f"{domain}/{ln}.{dataset.get('name')}"] = [
                    f"{domain}/{m.get('prefix')}{m.get('lnClass')}{m.get('lnInst')}.{m.get('doName')}[{m.get('fc')}]"
                    for m in dataset.iter(f"{SCL}FCDA")
                ]
            for report in node.iter(f"{SCL}ReportControl"):
                fc = "BR" if report.get("buffered") == "true" else "RP"
                reports.add(f"{domain}/{ln}${fc}${report.get('name')}")
                variables.add(f"{domain}/{ln}${fc}")
    return variables, datasets, reports


def test_icd_describes_exactly_the_attributes_the_server_exposes(served: Served, tmp_path: Path) -> None:
    icd = tmp_path / "socgw.icd"
    result = subprocess.run(
        socgw_command("icd", "-c", served.config.path, "-o", str(icd)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    document = iec61850.load_scl(icd)  # an independent SCL parser resolves every type reference
    assert document.ieds() == ["SOCGW"]
    variables, datasets, reports = icd_model(icd)
    listed = run_client(served.port, "browse")
    served_variables: set[str] = set()
    served_reports: set[str] = set()
    for device, names in listed["variables"].items():
        for name in names:
            parts = name.split("$")
            if len(parts) > 2 and parts[1] in ("BR", "RP"):
                # report blocks are compared by name; their attributes (RptID, RptEna...) are fixed
                # by IEC 61850-8-1, not by the model
                if len(parts) == 3:
                    served_reports.add(f"{device}/{name}")
                continue
            served_variables.add(f"{device}/{name}")
    assert served_variables == variables
    assert served_reports == reports
    assert listed["datasets"] == datasets  # members in order, as LD/LN.DO[FC]


def test_the_large_site_map_serves_packs_without_a_buffered_report(tmp_path: Path) -> None:
    with serve(tmp_path, 2, map="large") as running:
        browsed = run_rust_client(running.port, "browse")
        values = run_client(running.port, "read", *soc_references(["SOCGWFLEET"]))["values"]
        packs = running.devices()[1:]
    assert browsed["blocks"]["SOCGWFLEET"]["BR"] and browsed["blocks"]["SOCGWFLEET"]["RP"]
    for device in packs:
        assert not browsed["blocks"][device]["BR"], device
        assert browsed["blocks"][device]["RP"], device
        assert {"ZBAT1", "ZINV1"} <= set(browsed["devices"][device])
    assert values[1] == 0  # the fleet SOC is served, quality good


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in iter(stream.readline, ""):
        lines.put(line)
    lines.put(None)


def _next_document(lines: queue.Queue[str | None], deadline: float) -> dict[str, Any] | None:
    import json

    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return None
        if line is None:
            return None
        if line.startswith("{"):
            document: dict[str, Any] = json.loads(line)
            return document
    return None


def test_buffered_report_arrives_when_a_pack_soc_changes(served: Served) -> None:
    iec_map = load_map(find_map("default", Path(served.config.path).parent))
    meas = next(dataset for dataset in iec_map.pack.datasets if dataset.name == "Meas")
    soc_index = [(m.logical_node, m.data_object) for m in meas.members].index(("ZBAT1", "Soc"))
    process = subprocess.Popen(
        client_command(
            served.port, "report", "SOCGWPACK_02/LLN0.BR.brcbMeas", "--seconds", str(REPORT_WAIT_S)
        ),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True).start()
    try:
        deadline = time.monotonic() + REPORT_WAIT_S
        # the reports buffered since start-up may arrive before the client says it is ready
        while (ready := _next_document(lines, deadline)) is not None and "ready" not in ready:
            assert "report_error" not in ready, ready
        assert ready is not None, "the report client never enabled the block"
        served.fleet.update_state("pack-02", soc_pct=31.4)
        reported: list[float] = []
        while (document := _next_document(lines, deadline)) is not None:
            assert "report_error" not in document, document
            soc = (document.get("values") or [None] * (soc_index + 1))[soc_index]
            if soc is not None:
                reported.append(soc[0][0])
                if soc[0][0] == pytest.approx(31.4, abs=1e-4):
                    break
        assert reported and reported[-1] == pytest.approx(31.4, abs=1e-4), reported
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_pack_that_stops_answering_turns_invalid_not_stale(served: Served) -> None:
    served.fleet.set_faults("pack-04", silent=True)
    try:
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline:
            nodes = {node["id"]: node for node in served.gateway.status()["nodes"]}
            if nodes["pack-04"]["quality"] == "failed":
                break
            time.sleep(0.2)
        else:
            raise AssertionError("pack-04 never turned failed")
        values = run_client(
            served.port,
            "read",
            "SOCGWPACK_04/ZBAT1.Soc.q", "MX",
            "SOCGWPACK_04/ZBAT1.ComAlm.stVal", "ST",
            "SOCGWPACK_04/ZBAT1.BatSt.stVal", "ST",
            "SOCGWPACK_04/LLN0.Health.stVal", "ST",
            "SOCGWPACK_04/ZBAT1.ComAlm.q", "ST",
        )["values"]  # fmt: skip
        assert values[0] & QUALITY_VALIDITY_MASK == QUALITY_INVALID
        assert values[1:4] == [True, False, 3]  # comm alarm on, pack not online, health Alarm
        assert values[4] == 0  # the alarm itself is a good value
    finally:
        served.fleet.clear_faults("pack-04")
