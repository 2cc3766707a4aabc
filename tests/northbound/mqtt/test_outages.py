"""Broker outages, mutual TLS and the Will: what a broker does with the edge node when things go wrong."""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import subprocess
import time
from pathlib import Path

import aiomqtt
import pytest

from tests.conftest import StartFleet, free_port, socgw_command
from tests.northbound.mqtt.support import Broker, Decoder, broker_certificate, kind, metrics
from tests.northbound.mqtt.test_edge_node import EDGE, GROUP, Gateway, is_, mqtt_section, value, with_gateway
from tests.northbound.pki import Issued, Pki
from tests.test_engine import site_config

pytestmark = pytest.mark.wire


def test_broker_down_10_s_balancing_goes_on_and_the_node_rebirths(
    tmp_path: Path, start_sim_fleet: StartFleet
) -> None:
    fleet = start_sim_fleet(packs=2, speed=0)

    async def scenario(gw: Gateway) -> None:
        first = await gw.next(is_("NBIRTH"))
        await gw.next(is_("DBIRTH", "pack-02"))
        gw.broker.stop()
        started, gaps, last = time.monotonic(), [], time.monotonic()
        while time.monotonic() - started < 10.0:
            snapshot = await gw.engine.run_cycle()
            now = time.monotonic()
            gaps.append(now - last)
            last = now
            await asyncio.sleep(0.1)
        assert len(snapshot.fleet.online_nodes) == 2 and max(gaps) < 0.5, max(gaps)
        gw.broker.start()
        again = await gw.next(is_("NBIRTH"), timeout_s=30)
        assert value(metrics(again)["bdSeq"]) > value(metrics(first)["bdSeq"])
        assert again["payload"]["seq"] == 0
        rebirth = await gw.next(is_("DBIRTH", "pack-02"))
        latest = gw.adapter._edge.latest
        assert latest is not None
        assert value(metrics(rebirth)["soc_pct"]) == pytest.approx(latest.fleet.nodes[1].soc_pct)

    with_gateway(tmp_path, fleet, scenario)


def _tls_broker(tmp_path: Path, pki: Pki) -> tuple[Broker, int]:
    tls_port = free_port()
    cert = broker_certificate(pki.ca, tmp_path)
    return Broker(tmp_path, free_port(), (pki.ca.cert_path, cert, tls_port)), tls_port


def _tls_section(port: int, ca: Path, client: Issued) -> str:
    return mqtt_section(port, f"    tls: {{ca: {ca}, cert: {client.cert}, key: {client.key}}}\n")


def test_the_right_client_certificate_connects(tmp_path: Path, start_sim_fleet: StartFleet, pki: Pki) -> None:
    fleet = start_sim_fleet(packs=1, speed=0)
    broker, tls_port = _tls_broker(tmp_path, pki)

    async def scenario(gw: Gateway) -> None:
        await gw.next(is_("NBIRTH"))

    section = _tls_section(tls_port, pki.ca.cert_path, pki.master)
    with_gateway(tmp_path, fleet, scenario, broker=broker, section=section)


@pytest.mark.parametrize("wrong", ["another CA", "plain to the TLS port"])
def test_the_adapter_is_refused(tmp_path: Path, start_sim_fleet: StartFleet, pki: Pki, wrong: str) -> None:
    fleet = start_sim_fleet(packs=1, speed=0)
    broker, tls_port = _tls_broker(tmp_path, pki)

    async def scenario(gw: Gateway) -> None:
        with pytest.raises(AssertionError):
            await gw.next(is_("NBIRTH"), timeout_s=3)
        assert gw.adapter.connections == 0

    if wrong == "another CA":  # the stranger's CA is not the broker's: its certificate is refused
        section = _tls_section(tls_port, pki.ca.cert_path, pki.stranger)
    else:
        section = mqtt_section(tls_port)
    with_gateway(tmp_path, fleet, scenario, broker=broker, section=section)


def _context(pki: Pki, client: Issued | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca.cert_path))
    if client is not None:
        context.load_cert_chain(client.cert, client.key)
    return context


def _tls11_handshake(port: int, pki: Pki) -> str:
    """A TLS 1.1 handshake with the right certificate, by an OpenSSL client allowed to offer it
    (security level 0): what the broker answers."""
    done = subprocess.run(
        ["openssl", "s_client", "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", "-connect", f"127.0.0.1:{port}",
         "-CAfile", str(pki.ca.cert_path), "-cert", str(pki.master.cert), "-key", str(pki.master.key)],
        input=b"", capture_output=True, timeout=10, check=False,
    )  # fmt: skip
    return (done.stdout + done.stderr).decode(errors="replace")


async def _connects(port: int, context: ssl.SSLContext) -> bool:
    try:
        async with aiomqtt.Client("127.0.0.1", port, tls_context=context, timeout=3):
            return True
    except aiomqtt.MqttError:
        return False


def test_the_broker_takes_only_the_right_certificate_over_tls12(tmp_path: Path, pki: Pki) -> None:
    broker, tls_port = _tls_broker(tmp_path, pki)
    try:

        async def attempts() -> dict[str, bool]:
            return {
                "right": await _connects(tls_port, _context(pki, pki.master)),
                "none": await _connects(tls_port, _context(pki, None)),
                "another CA": await _connects(tls_port, _context(pki, pki.stranger)),
                "expired": await _connects(tls_port, _context(pki, pki.expired)),
            }

        results = asyncio.run(attempts())
        tls11 = _tls11_handshake(tls_port, pki)
    finally:
        broker.stop()
    assert results == {"right": True, "none": False, "another CA": False, "expired": False}
    assert "alert protocol version" in tls11, tls11  # refused by the broker, not by our own client


def test_sigkill_of_the_gateway_makes_the_broker_deliver_ndeath(
    tmp_path: Path, start_sim_fleet: StartFleet
) -> None:
    fleet = start_sim_fleet(packs=2, speed=0)
    broker = Broker(tmp_path, free_port())
    decoder = Decoder(broker.port)
    config = site_config(tmp_path, fleet.endpoints, mqtt_section(broker.port))
    gateway = subprocess.Popen(
        socgw_command("run", "-c", str(config.path)), start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        birth = decoder.next(is_("NBIRTH"), timeout_s=30)
        decoder.next(is_("DBIRTH", "pack-02"), timeout_s=30)
        os.killpg(gateway.pid, signal.SIGKILL)  # the core and its MQTT child, no goodbye
        gateway.wait(10)
        death = decoder.next(lambda m: "payload" in m and kind(m) == "NDEATH", timeout_s=30)
    finally:
        if gateway.poll() is None:
            os.killpg(gateway.pid, signal.SIGKILL)
        decoder.close()
        broker.stop()
    assert death["topic"] == f"spBv1.0/{GROUP}/NDEATH/{EDGE}"
    assert value(metrics(death)["bdSeq"]) == value(metrics(birth)["bdSeq"])
    assert "seq" not in death["payload"] or death["payload"]["seq"] is None
