"""`socgw demo --workers K`: a broker, K workers with their simulated packs and the head, on one machine."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import free_port, socgw_command

pytestmark = pytest.mark.wire


def test_demo_with_workers_balances_the_clusters_under_a_head() -> None:
    mqtt, dnp3, mms = free_port(), free_port(), free_port()
    base = free_port()
    while {mqtt, dnp3, mms} & set(range(base, base + 4)):  # the four packs take base .. base + 3
        base = free_port()
    demo = subprocess.run(
        socgw_command(
            "demo", "--workers", "2", "--packs", "2", "--duration", "12", "--no-ui", "--mqtt-port", str(mqtt),
            "--base-port", str(base), "--dnp3-port", str(dnp3), "--mms-port", str(mms),
        ),
        check=False, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr
    last = json.loads(demo.stdout.splitlines()[-1])
    clusters = {node["id"]: node for node in last["nodes"]}
    assert set(clusters) == {"worker-1", "worker-2"}
    assert all(node["quality"] == "good" and node["setpoint_w"] > 0 for node in clusters.values())
    assert last["served_w"] == pytest.approx(last["request_w"]) and last["request_w"] > 0
    packs = {pack["id"]: pack for pack in last["packs"]}  # every pack behind the workers, from their DDATA
    assert set(packs) == {f"worker-{w}-pack-0{p}" for w in (1, 2) for p in (1, 2)}
    assert all(pack["quality"] == "good" and pack["soc_pct"] is not None for pack in packs.values())
    assert {pack["worker"] for pack in packs.values()} == {"worker-1", "worker-2"}
    assert sum(pack["setpoint_w"] for pack in packs.values()) == pytest.approx(last["request_w"], abs=50)
    assert "a head over 2 workers of 2 simulated packs" in demo.stderr


def test_demo_workers_refuses_no_workers() -> None:
    demo = subprocess.run(
        socgw_command("demo", "--workers", "0"), check=False, capture_output=True, text=True, timeout=60
    )
    assert demo.returncode == 1
    assert "--workers takes K >= 1" in demo.stderr
