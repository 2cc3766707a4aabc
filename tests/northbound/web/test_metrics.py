"""`/metrics` scraped from a running gateway on simulated packs, parsed with prometheus_client's parser."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from gateway.balancer import NodeMode
from gateway.fleet import Quality
from gateway.mapping.sources import read_fleet, read_node
from gateway.northbound.web.history import History
from gateway.northbound.web.metrics import Metrics
from gateway.site_command import CommandUpdate
from gateway.snapshot import CycleAccounts, CycleSnapshot
from tests.conftest import REPO, StartFleet
from tests.northbound.process.test_channel import cycle
from tests.northbound.web.support import Gateway, documented_families, web_site_config
from tests.test_engine import run_async

pytestmark = pytest.mark.wire  # real stacks, sockets on loopback or child processes

PACKS = 3


def test_metrics_show_every_documented_family_with_the_snapshots_values(
    tmp_path: Path, start_sim_fleet: StartFleet, free_tcp_port: int
) -> None:
    fleet = start_sim_fleet(packs=PACKS, speed=60.0)
    config = web_site_config(tmp_path, fleet.endpoints, free_tcp_port)

    async def scenario() -> tuple[CycleSnapshot, str]:
        async with Gateway(config) as gateway:
            first = await gateway.online(PACKS)
            gateway.engine.submit(
                CommandUpdate(source="test", request_w=round(first.fleet.available_discharge_w / 2))
            )
            snapshot = await gateway.cycles(10)
            status, text = await gateway.get("/metrics")
            assert status == 200, text
            return snapshot, text

    snapshot, text = run_async(scenario)
    families = {family.name: family for family in text_string_to_metric_families(text)}
    documented = documented_families()
    assert len(documented) >= 19
    assert sorted(set(documented) - set(families)) == []

    samples = [sample for family in families.values() for sample in family.samples]

    def value(name: str, **labels: str) -> float:
        found = [s for s in samples if isinstance(s, Sample) and s.name == name and s.labels == labels]
        assert len(found) == 1, (name, labels)
        return found[0].value

    assert value("socgw_cycles_total") == snapshot.index
    assert value("socgw_cycle_overruns_total") == snapshot.accounts.overruns
    for step in ("poll", "dispatch", "write"):
        assert value("socgw_cycle_step_seconds", step=step) == pytest.approx(
            snapshot.accounts.steps_ms[step] / 1000.0, abs=1e-9
        )
    assert value("socgw_cycle_work_seconds_count") == snapshot.index
    for family, quantity, factor in (
        ("socgw_site_request_watts", "fleet.request_w", 1.0),
        ("socgw_site_served_watts", "fleet.served_w", 1.0),
        ("socgw_site_unserved_watts", "fleet.unserved_w", 1.0),
        ("socgw_fleet_power_watts", "fleet.power_w", 1.0),
        ("socgw_fleet_soc_ratio", "fleet.mean_soc_pct", 0.01),
        ("socgw_fleet_nodes_online", "fleet.nodes_online", 1.0),
    ):
        expected = read_fleet(quantity, snapshot)
        assert isinstance(expected, float)
        assert abs(value(family) - expected * factor) < 1e-6, family
    assert value("socgw_site_request_watts") > 0
    for node in snapshot.fleet.nodes:
        labels = {"node": node.node_id, "profile": "microstore/mp2000"}
        for family, quantity, factor in (
            ("socgw_node_soc_ratio", "node.soc_pct", 0.01),
            ("socgw_node_power_watts", "node.power_w", 1.0),
            ("socgw_node_setpoint_watts", "node.setpoint_w", 1.0),
            ("socgw_node_temperature_celsius", "node.temp_c", 1.0),
        ):
            expected = read_node(quantity, snapshot, node)
            assert isinstance(expected, float)
            assert abs(value(family, **labels) - expected * factor) < 1e-6, (family, node.node_id)
        assert value("socgw_node_writes_total", **labels) == snapshot.accounts.writes[node.node_id]
        decision = snapshot.node_dispatch(node.node_id)
        assert decision is not None
        for mode in NodeMode:
            assert value("socgw_node_mode", **labels, mode=str(mode)) == (
                1.0 if decision.mode is mode else 0.0
            )
        for quality in Quality:
            assert value("socgw_node_quality", **labels, quality=str(quality)) == float(
                node.quality is quality
            )
    count = value("socgw_cycle_interval_seconds_count")
    assert count == snapshot.index - 1  # one interval between each two cycles
    assert value("process_resident_memory_bytes") > 10e6
    assert value("process_cpu_seconds_total") > 0


def test_the_grafana_dashboard_queries_only_documented_families() -> None:
    dashboard = json.loads((REPO / "docs/grafana-dashboard.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {name for expr in expressions for name in re.findall(r"\b((?:socgw|process)_[a-z_]+)", expr)}
    documented = set(documented_families())
    suffixes = ("_total", "_bucket", "_sum", "_count")
    bases = {next((name.removesuffix(s) for s in suffixes if name.endswith(s)), name) for name in used}
    assert bases <= documented, bases - documented
    assert {"socgw_node_soc_ratio", "socgw_node_faults", "socgw_cycle_interval_seconds"} <= bases


def test_metrics_count_every_front_door_the_snapshot_carries_beside_the_views_own() -> None:
    snapshot = cycle(1)
    snapshot = dataclasses.replace(
        snapshot,
        accounts=CycleAccounts(front_door={"dnp3": {"accepted": 3, "refused-not-allowed": 2}}),
    )
    metrics = Metrics(lambda: (snapshot, History(0.1)), {}, lambda: {"accepted": 1})
    counted = {
        (sample.labels["section"], sample.labels["outcome"]): sample.value
        for family in text_string_to_metric_families(generate_latest(metrics.registry).decode())
        if family.name == "socgw_frontdoor_connections"
        for sample in family.samples
        if sample.name.endswith("_total")
    }
    assert counted == {("dnp3", "accepted"): 3, ("dnp3", "refused-not-allowed"): 2, ("web", "accepted"): 1}
