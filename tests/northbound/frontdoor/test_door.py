"""The front door with the real stacks (`socgw run`, the DNP3 and IEC 61850 children): squatters,
allow-lists seen from client network namespaces, TLS on the system's OpenSSL, the one-master rule."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvloop

from tests.conftest import LOOPBACK, StartFleet
from tests.northbound.dnp3.support import connected_master
from tests.northbound.frontdoor.support import (
    client_namespaces,
    door_config,
    door_counts,
    private_port,
)
from tests.northbound.iec61850.helpers import CLIENT, GatewayProcess, run_client
from tests.northbound.pki import Issued, Pki

pytestmark = pytest.mark.wire  # real stacks, child processes, network namespaces

T = TypeVar("T")
SQUATTERS = 50
FIRST_FRAME_S = 3.0
SOC = ("SOCGWPACK_01/ZBAT1.Soc.mag.f", "MX")
BATTERIES = 27  # the default DNP3 map's analog input: number of batteries


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return uvloop.run(asyncio.wait_for(scenario(), timeout=60))


async def dnp3_poll(port: int, *, host: str = LOOPBACK, tls: ssl.SSLContext | None = None) -> float:
    """One integrity poll by an independent master (dnp3py): the number of batteries it read."""
    async with connected_master(port, host=host, tls=tls, timeout_s=3.0) as master:
        await master.integrity_poll()
        value: float = master.handler.analog_inputs[BATTERIES].value
        return value


def wait_for_counts(gateway: GatewayProcess, section: str, expected: dict[str, int]) -> dict[str, int]:
    """The section's front-door counters once they reach `expected` (each at least), within 5 s."""
    counts: dict[str, int] = {}
    for _ in range(50):
        counts = door_counts(gateway.status(), section)
        if all(counts.get(name, 0) >= count for name, count in expected.items()):
            return counts
        time.sleep(0.1)
    raise AssertionError(f"{section} front door counted {counts}, expected at least {expected}")


def test_fifty_silent_connections_each_then_the_master_and_the_client_get_in(
    tmp_path: Path, start_sim_fleet: StartFleet, free_tcp_ports: Callable[[int], list[int]]
) -> None:
    fleet = start_sim_fleet(packs=1, speed=0.0)
    dnp3_port, mms_port = free_tcp_ports(2)
    door = {"first_frame_s": FIRST_FRAME_S, "connects_per_min": 6000}
    config = door_config(
        tmp_path,
        fleet.endpoints,
        {"dnp3": {"port": dnp3_port, **door}, "iec61850": {"host": LOOPBACK, "port": mms_port, **door}},
    )
    with GatewayProcess(config, tmp_path / "status.sock", 1) as gateway:
        squatters = [
            socket.create_connection((LOOPBACK, port), timeout=2.0)
            for port in (dnp3_port, mms_port)
            for _ in range(SQUATTERS)
        ]
        opened = time.monotonic()
        batteries = run(lambda: dnp3_poll(dnp3_port))
        read = run_client(mms_port, "read", *SOC)
        served_s = time.monotonic() - opened
        for squatter in squatters:  # each closed by the door once its first-frame time is up
            squatter.settimeout(FIRST_FRAME_S + 3.0)
            assert squatter.recv(1) == b""
            squatter.close()
        closed_s = time.monotonic() - opened
        dnp3_counts = wait_for_counts(
            gateway, "dnp3", {"refused-first-frame-timeout": SQUATTERS, "admitted": 1}
        )
        mms_counts = wait_for_counts(
            gateway, "iec61850", {"refused-first-frame-timeout": SQUATTERS, "admitted": 1}
        )
        with pytest.raises(OSError):  # the stack's private port: a SYN without the door's key is dropped
            socket.create_connection((LOOPBACK, private_port(gateway.output, "dnp3")), timeout=1.0)
    assert batteries == 1.0
    assert read["values"] == [pytest.approx(fleet.snapshot("pack-01").state.soc_pct, abs=0.051)]
    assert served_s < FIRST_FRAME_S  # served while every squatter still held its connection
    assert FIRST_FRAME_S - 0.5 < closed_s < FIRST_FRAME_S + 3.0
    assert (
        dnp3_counts["refused-first-frame-timeout"] == mms_counts["refused-first-frame-timeout"] == SQUATTERS
    )


def test_outside_the_allow_list_there_is_no_protocol_answer_inside_it_works(
    tmp_path: Path, start_sim_fleet: StartFleet, free_tcp_ports: Callable[[int], list[int]]
) -> None:
    fleet = start_sim_fleet(packs=1, speed=0.0)
    dnp3_port, mms_port = free_tcp_ports(2)
    with client_namespaces(2) as (inside, outside):
        allow = {"host": inside.gateway, "allow": [f"{inside.address}/32"]}
        config = door_config(
            tmp_path,
            fleet.endpoints,
            {"dnp3": {"port": dnp3_port, **allow}, "iec61850": {"port": mms_port, **allow}},
        )
        with GatewayProcess(config, tmp_path / "status.sock", 1) as gateway:
            master = inside.peer("dnp3", inside.gateway, str(dnp3_port))
            client = inside.run(
                sys.executable, str(CLIENT), "--host", inside.gateway, "--port", str(mms_port), "read", *SOC
            )
            operate = ("operate", "SOCGWFLEET/DRCC1.OutWSet", "900")
            inside.run(
                sys.executable, str(CLIENT), "--host", inside.gateway, "--port", str(mms_port), *operate
            )
            probes = {
                (space.name, protocol): space.peer("probe", inside.gateway, str(port), protocol)
                for space in (inside, outside)
                for protocol, port in (("dnp3", dnp3_port), ("iec61850", mms_port))
            }
            dnp3_counts = wait_for_counts(gateway, "dnp3", {"refused-not-allowed": 1})
            mms_counts = wait_for_counts(gateway, "iec61850", {"refused-not-allowed": 1})
    assert master == {"batteries": 1.0, "polls": 1}
    # the outstation names the master's own address (from the door), not the door's loopback one
    assert any(f"DNP3 connection from {inside.address}:" in line for line in gateway.output), gateway.output
    # and the IEC 61850 server's command log names the client behind the door, not the door's loopback end
    operated = [line for line in gateway.output if "IEC 61850 operate" in line]
    assert operated and all(f"from {inside.address}:" in line for line in operated), operated
    assert '"values": [' in client.stdout, client.stdout + client.stderr
    for protocol in ("dnp3", "iec61850"):
        assert probes[(inside.name, protocol)]["answer"] > 0  # a link status answer; a COTP CC
        assert probes[(outside.name, protocol)] == {"connected": True, "answer": 0}
    assert dnp3_counts["refused-not-allowed"] == mms_counts["refused-not-allowed"] == 1


# --- TLS -------------------------------------------------------------------------------------------


def tls_settings(pki: Pki) -> dict[str, Any]:
    return {
        "ca": pki.ca.cert_path,
        "cert": pki.outstation.cert,
        "key": pki.outstation.key,
        "clients": ["CN=master"],
    }


def s_client(port: int, pki: Pki, *options: str) -> str:
    """`openssl s_client` (the system's OpenSSL 3) with the master's certificate: what it printed."""
    command = [
        "openssl",
        "s_client",
        "-connect",
        f"{LOOPBACK}:{port}",
        "-CAfile",
        str(pki.ca.cert_path),
        "-cert",
        str(pki.master.cert),
        "-key",
        str(pki.master.key),
        "-brief",
        *options,
    ]
    result = subprocess.run(command, input="", capture_output=True, text=True, timeout=30, check=False)
    return result.stdout + result.stderr


def tls_context(pki: Pki, identity: Issued | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(pki.ca.cert_path)
    if identity is not None:
        context.load_cert_chain(identity.cert, identity.key)
    return context


def dnp3_refused(port: int, context: ssl.SSLContext | None) -> bool:
    async def attempt() -> bool:
        try:
            await dnp3_poll(port, tls=context)
        except Exception:  # refused: a TLS alert, a reset, a timeout
            return True
        return False

    return run(attempt)


def mms_refused(port: int, pki: Pki, identity: Issued | None, *, tls: bool = True) -> bool:
    files = (pki.ca.cert_path, identity.cert if identity else None, identity.key if identity else None)
    return "connect_error" in run_client(port, "read", *SOC, tls=files if tls else None)


@pytest.mark.parametrize("protocol", ["dnp3", "iec61850"])
def test_tls_on_the_systems_openssl_admits_only_the_listed_certificate(
    tmp_path: Path, pki: Pki, start_sim_fleet: StartFleet, free_tcp_port: int, protocol: str
) -> None:
    fleet = start_sim_fleet(packs=1, speed=0.0)
    section = {"host": LOOPBACK, "port": free_tcp_port, "tls": tls_settings(pki), "connects_per_min": 6000}
    config = door_config(tmp_path, fleet.endpoints, {protocol: section})
    port = free_tcp_port
    with GatewayProcess(config, tmp_path / "status.sock", 1) as gateway:
        tls13 = s_client(port, pki)
        tls12 = s_client(port, pki, "-tls1_2")
        cbc_only = s_client(
            port, pki, "-tls1_2", "-cipher", "ECDHE+AES+SHA1:ECDHE+AES+SHA256:AES+SHA1:@SECLEVEL=0"
        )
        tls11 = s_client(port, pki, "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0")
        if protocol == "dnp3":
            works = run(lambda: dnp3_poll(port, tls=tls_context(pki, pki.master))) == 1.0
            refusals = {
                "none": dnp3_refused(port, tls_context(pki, None)),
                "other CA": dnp3_refused(port, tls_context(pki, pki.stranger)),
                "expired": dnp3_refused(port, tls_context(pki, pki.expired)),
                "not listed": dnp3_refused(port, tls_context(pki, pki.outstation)),
                "plain TCP": dnp3_refused(port, None),
            }
        else:
            works = not mms_refused(port, pki, pki.master)
            refusals = {
                "none": mms_refused(port, pki, None),
                "other CA": mms_refused(port, pki, pki.stranger),
                "expired": mms_refused(port, pki, pki.expired),
                "not listed": mms_refused(port, pki, pki.outstation),
                "plain TCP": mms_refused(port, pki, None, tls=False),
            }
        counts = wait_for_counts(gateway, protocol, {"refused-client-not-listed": 1, "admitted": 1})
    assert "Protocol version: TLSv1.3" in tls13, tls13
    assert "Protocol version: TLSv1.2" in tls12 and ("GCM" in tls12 or "CHACHA20" in tls12), tls12
    assert "Protocol version" not in cbc_only, cbc_only  # no CBC suite is offered on TLS 1.2
    assert "Protocol version" not in tls11, tls11  # a client that offers only TLS 1.1
    assert works
    assert refusals == dict.fromkeys(refusals, True)
    assert counts.get("refused-client-not-listed") == 1
    assert counts.get("refused-tls-failed", 0) >= len(refusals) - 1


# --- one master ---------------------------------------------------------------------------------------


def test_a_master_that_reconnects_at_once_is_served_and_a_second_master_is_not(
    tmp_path: Path, start_sim_fleet: StartFleet, free_tcp_port: int
) -> None:
    fleet = start_sim_fleet(packs=1, speed=0.0)
    port = free_tcp_port
    with client_namespaces(2) as (first, second):
        section = {
            "host": "0.0.0.0",
            "port": port,
            "allow": ["127.0.0.0/8", f"{first.address}/32", f"{second.address}/32"],
            "idle_s": 2,
            "connects_per_min": 6000,
        }
        config = door_config(tmp_path, fleet.endpoints, {"dnp3": section})
        with GatewayProcess(config, tmp_path / "status.sock", 1) as gateway:

            async def reconnecting() -> tuple[list[float], float, bool, bool]:
                # a master that drops its connection and reconnects at once, ten times
                at_once = [await dnp3_poll(port) for _ in range(10)]
                async with connected_master(port, timeout_s=2.0) as stale:
                    await stale.integrity_poll()
                    # the same master again while its old connection still stands: the new one is served
                    renewed = await dnp3_poll(port)
                    with contextlib.suppress(Exception):
                        await stale.integrity_poll()
                        return at_once, renewed, False, False
                # a master that goes quiet is closed after idle_s
                async with connected_master(port, timeout_s=2.0) as quiet:
                    await quiet.integrity_poll()
                    await asyncio.sleep(3.0)
                    try:
                        await quiet.integrity_poll()
                    except Exception:
                        return at_once, renewed, True, True
                    return at_once, renewed, True, False

            at_once, renewed, stale_closed, idle_closed = run(reconnecting)
            holder = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    first.name,
                    sys.executable,
                    "-m",
                    "tests.northbound.frontdoor.peers",
                    "dnp3",
                    first.gateway,
                    str(port),
                    "--hold",
                    "4",
                ],
                stdout=subprocess.PIPE,
                text=True,
                cwd=Path(__file__).resolve().parents[3],
            )
            try:
                time.sleep(2.0)  # the first master polls every 0.5 s
                intruder = second.peer("probe", first.gateway, str(port), "dnp3")
                held, _ = holder.communicate(timeout=30)
            finally:
                holder.kill()
                holder.wait(10)
            counts = wait_for_counts(gateway, "dnp3", {"replaced": 1, "refused-busy": 1, "closed-idle": 1})
    assert at_once == [1.0] * 10
    assert renewed == 1.0 and stale_closed and idle_closed
    assert intruder == {"connected": True, "answer": 0}
    assert '"error"' not in held and '"batteries": 1.0' in held, held
    assert counts["refused-busy"] == 1
