"""`socgw demo --mqtt-port P`: a broker of its own on loopback, the simulated fleet published to it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gateway.northbound.mqtt.metrics import REBIRTH, DataType
from tests.conftest import free_port, socgw_command
from tests.northbound.mqtt.support import Decoder, metrics, publish, wait_for_port
from tests.northbound.mqtt.test_edge_node import command, is_, value

pytestmark = pytest.mark.wire


def test_demo_starts_a_broker_and_publishes_sparkplug(tmp_path: Path) -> None:
    port = free_port()
    demo = subprocess.Popen(
        socgw_command(
            "demo", "--packs", "2", "--duration", "20", "--no-ui", "--mqtt-port", str(port),
            "--base-port", str(free_port()), "--dnp3-port", str(free_port()), "--mms-port", str(free_port()),
        ),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for_port(port, timeout_s=30)
        decoder = Decoder(port)
        # The births may have gone before the decoder subscribed: ask again (lost if they are yet to come).
        publish(port, "spBv1.0/socgw/NCMD/demo", command((REBIRTH, DataType.BOOLEAN, True)))
        try:
            birth = decoder.next(is_("DBIRTH", "pack-02"), timeout_s=30)
        finally:
            decoder.close()
    finally:
        demo.terminate()
        _, errors = demo.communicate(timeout=30)
    assert 0 <= value(metrics(birth)["soc_pct"]) <= 100
    assert f"MQTT broker on 127.0.0.1:{port}" in errors
