"""`socgw points --mqtt`: every topic and metric the edge node publishes, and the writable ones."""

from __future__ import annotations

import csv
import io
import subprocess
from pathlib import Path

from gateway.commands.points import MQTT_COLUMNS
from gateway.northbound.mqtt.metrics import metric_table, quantity_deadbands
from tests.conftest import REPO, socgw_command


def test_points_lists_topics_metrics_and_commands(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("site: {name: yard}\nnodes: []\nnorthbound:\n  mqtt: {group_id: plant}\n")
    done = subprocess.run(
        socgw_command("points", "--mqtt", "--format", "csv", "-c", str(config)),
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert tuple(rows[0]) == MQTT_COLUMNS
    table = metric_table(quantity_deadbands(REPO))
    names = {row["metric"] for row in rows}
    assert names == {spec.name for spec in table.node + table.device} | {"bdSeq", "Node Control/Rebirth"}
    writable = {row["metric"]: row["write"] for row in rows if row["write"]}
    assert writable == {
        "Node Control/Rebirth": "NCMD true", "request_w": "NCMD", "balancing_enabled": "NCMD",
        "reserve_pct": "NCMD", "ceiling_pct": "NCMD", "maintenance": "DCMD", "calibrating": "DCMD",
    }  # fmt: skip
    soc = next(row for row in rows if row["metric"] == "soc_pct")
    assert soc["topic"] == "spBv1.0/plant/DBIRTH|DDATA|DDEATH/yard/<pack id>" and soc["deadband"] == "0.5"


def test_points_without_an_mqtt_section_says_what_to_add(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("nodes: []\n")
    done = subprocess.run(
        socgw_command("points", "--mqtt", "-c", str(config)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "northbound: {mqtt: {}}" in done.stderr
