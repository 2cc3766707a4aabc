"""Each protocol stack in its own supervised process, as `socgw run` runs them.

`socgw run` serves DNP3 and IEC 61850 from frozen simulated packs. The core process must hold neither
stack; each child only its own. A child killed by SIGKILL, or crashing itself with SIGSEGV (a NULL read
through ctypes), is logged once and serving again within 2 s, while the engine ran every cycle (no
overrun), the other protocol kept answering, and a master that connects again reads the values the
core holds.

The segfault is the child's own, as a crash inside a C stack would be, with no code path for it in
socgw: this module's gateway starts with a `sitecustomize` of the test's on PYTHONPATH (passed on to the
children, as every variable but systemd's), which in an adapter child only watches for a file named
after its pid and then reads address 0 with `ctypes.string_at`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop

from gateway.northbound.iec61850.plan import device_name_for
from gateway.profiles.loader import ProfileLibrary
from gateway.sim.fleet import FleetThread
from gateway.sim.scenario import DEFAULT_PROFILE, uniform_fleet
from tests.conftest import LOOPBACK, PROFILES, ephemeral_ports, free_port, socgw_command
from tests.northbound.dnp3.support import connected_master
from tests.northbound.iec61850.helpers import GatewayProcess, iec_section, run_client, soc_references
from tests.test_engine import site_config

PACKS = 3
CYCLE_S = 0.1
RESTART_LIMIT_S = 2.0
WAIT_S = 30.0
SOC_OF_PACK = 955 + 6  # DNP3 AI: AN2018 bank 1, SOC (0.1 %); bank n is 27 points further
# What maps only into the process that loaded each stack (/proc/PID/maps).
DNP3_LIBRARY = "opendnp3"
IEC61850_LIBRARY = "iec61850"

pytestmark = pytest.mark.wire  # real stacks, sockets on loopback or child processes


@dataclasses.dataclass
class Served:
    fleet: FleetThread
    gateway: GatewayProcess
    dnp3_port: int
    iec_port: int
    web_port: int
    segfaults: Path  # a file named after an adapter child's pid makes that child segfault

    def segfault(self, pid: int) -> None:
        (self.segfaults / str(pid)).touch()

    def status(self) -> dict[str, Any]:
        return self.gateway.status()

    def adapter(self, section: str) -> dict[str, Any]:
        adapters: list[dict[str, Any]] = self.status()["adapters"]
        return next(adapter for adapter in adapters if adapter["section"] == section)

    def devices(self) -> list[str]:
        return ["SOCGWFLEET"] + [f"SOCGW{device_name_for(e.pack_id)}" for e in self.fleet.endpoints]


# Imported by every interpreter started with its folder on PYTHONPATH; acts only in an adapter child.
SEGFAULT_HOOK = """\
import os, sys
if "gateway.northbound.process.child" in sys.orig_argv:
    import ctypes, pathlib, threading, time

    def _segfault_when_asked(trigger=pathlib.Path(__file__).with_name("segfaults") / str(os.getpid())):
        while not trigger.exists():
            time.sleep(0.02)
        ctypes.string_at(0)  # a NULL read: SIGSEGV in this process, as a C stack's bug would

    threading.Thread(target=_segfault_when_asked, name="test-segfault", daemon=True).start()
"""


def with_segfault_hook(directory: Path) -> dict[str, str]:
    """The environment variables that install SEGFAULT_HOOK (written into `directory`)."""
    (directory / "sitecustomize.py").write_text(SEGFAULT_HOOK)
    (directory / "segfaults").mkdir()
    paths = [str(directory), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {"PYTHONPATH": os.pathsep.join(paths)}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    profile = ProfileLibrary([PROFILES]).get(DEFAULT_PROFILE)
    fleet = FleetThread(ephemeral_ports(uniform_fleet(PACKS, profile, base_port=0, speed=0.0)))
    fleet.start()
    try:
        dnp3_port, iec_port, web_port = free_port(), free_port(), free_port()
        extra = (
            iec_section(iec_port)
            + f"  dnp3: {json.dumps({'port': dnp3_port})}\n"
            + f"  web: {json.dumps({'host': LOOPBACK, 'port': web_port})}\n"
        )
        config = site_config(tmp_path_factory.mktemp("process"), fleet.endpoints, extra)
        hooks = tmp_path_factory.mktemp("hooks")
        with contextlib.ExitStack() as stack:
            with pytest.MonkeyPatch.context() as patch:  # only for the gateway's start: it passes them on
                for name, value in with_segfault_hook(hooks).items():
                    patch.setenv(name, value)
                gateway = stack.enter_context(GatewayProcess(Path(config.path), config.status_socket, PACKS))
            running = Served(fleet, gateway, dnp3_port, iec_port, web_port, hooks / "segfaults")
            until(lambda: all(a["state"] == "running" for a in running.status()["adapters"]))
            yield running
        assert gateway.stop() == 0, gateway.output
    finally:
        fleet.stop()


def until(condition: Any, limit_s: float = WAIT_S) -> float:
    """Poll `condition` every 20 ms; the seconds it took (AssertionError past `limit_s`)."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        if condition():
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"not within {limit_s} s")


def mapped_libraries(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def dnp3_soc_counts(port: int) -> list[float]:
    """A fresh dnp3py master's integrity poll: the SOC of every pack, in 0.1 %."""

    async def poll() -> list[float]:
        async with connected_master(port) as master:
            await master.integrity_poll()
            inputs = master.handler.analog_inputs
            return [inputs[SOC_OF_PACK + 27 * pack].value for pack in range(PACKS)]

    return uvloop.run(asyncio.wait_for(poll(), timeout=WAIT_S))


def iec_socs(served: Served) -> list[float]:
    """A fresh libiec61850 client's read of every pack's SOC (its own process)."""
    values = run_client(served.iec_port, "read", *soc_references(served.devices()))["values"]
    assert values[1::2] == [0] * (PACKS + 1), values  # good quality everywhere
    return list(values[2::2])  # the fleet's own first


def core_socs(served: Served) -> list[float]:
    return [node["soc_pct"] for node in served.status()["nodes"]]


def test_the_core_holds_neither_stack_and_each_child_only_its_own(served: Served) -> None:
    assert served.gateway.process is not None
    core = mapped_libraries(served.gateway.process.pid)
    dnp3_child = mapped_libraries(served.adapter("dnp3")["pid"])
    iec_child = mapped_libraries(served.adapter("iec61850")["pid"])
    assert DNP3_LIBRARY not in core and IEC61850_LIBRARY not in core
    assert DNP3_LIBRARY in dnp3_child and IEC61850_LIBRARY not in dnp3_child
    assert IEC61850_LIBRARY in iec_child and DNP3_LIBRARY not in iec_child
    web_child = mapped_libraries(served.adapter("web")["pid"])
    assert DNP3_LIBRARY not in web_child and IEC61850_LIBRARY not in web_child
    # and both serve the fleet the core holds
    socs = core_socs(served)
    assert dnp3_soc_counts(served.dnp3_port) == [round(soc * 10) for soc in socs]
    assert iec_socs(served) == pytest.approx(socs, rel=1e-6)


def start_time_s(pid: int) -> float:
    """When the process started, in seconds since the epoch, as Prometheus' process collector counts."""
    ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    boot_s = next(
        int(line.split()[1])
        for line in Path("/proc/stat").read_text().splitlines()
        if line.startswith("btime")
    )
    return boot_s + ticks / os.sysconf("SC_CLK_TCK")


def test_the_web_views_process_metrics_describe_the_core_not_its_own_process(served: Served) -> None:
    assert served.gateway.process is not None
    with urllib.request.urlopen(f"http://{LOOPBACK}:{served.web_port}/metrics", timeout=WAIT_S) as response:
        text = response.read().decode()
    shown = next(
        float(line.split()[1]) for line in text.splitlines() if line.startswith("process_start_time_seconds ")
    )
    assert shown == pytest.approx(start_time_s(served.gateway.process.pid), abs=0.01)
    assert shown != pytest.approx(start_time_s(served.adapter("web")["pid"]), abs=0.01)


def sigkill(served: Served, pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def segfault_itself(served: Served, pid: int) -> None:
    served.segfault(pid)


@pytest.mark.parametrize(
    ("section", "crash", "signalled", "other"),
    [
        ("dnp3", sigkill, signal.SIGKILL, "iec61850"),
        ("iec61850", segfault_itself, signal.SIGSEGV, "dnp3"),
    ],
)
def test_a_crashed_adapter_is_back_within_2_s_and_balancing_never_missed_a_cycle(
    served: Served,
    section: str,
    crash: Callable[[Served, int], None],
    signalled: signal.Signals,
    other: str,
) -> None:
    socs = core_socs(served)
    readers = {"dnp3": lambda: dnp3_soc_counts(served.dnp3_port), "iec61850": lambda: iec_socs(served)}
    expected = {"dnp3": [round(soc * 10) for soc in socs], "iec61850": pytest.approx(socs, rel=1e-6)}
    assert readers[section]() == expected[section]  # a client served before the crash
    before = served.adapter(section)
    other_pid = served.adapter(other)["pid"]
    timing = served.status()["timing"]
    crashed_at = time.monotonic()
    crash(served, before["pid"])

    def back() -> bool:
        now = served.adapter(section)
        return bool(now["state"] == "running" and now["pid"] != before["pid"])

    restart_s = until(back)
    # The other protocol kept serving meanwhile, from the same process.
    assert readers[other]() == expected[other]
    assert served.adapter(other)["pid"] == other_pid
    # A client of the crashed protocol connects again and reads the core's values.
    assert readers[section]() == expected[section]
    elapsed_s = time.monotonic() - crashed_at
    after = served.status()
    now = served.adapter(section)
    print(f"{section} {signalled.name}: serving again {restart_s:.2f} s after the crash was asked for")
    assert restart_s < RESTART_LIMIT_S
    assert now["restarts"] == before["restarts"] + 1
    assert now["last_exit"] == f"killed by {signalled.name}"
    # Every cycle ran: none overran, and as many ran as the time allowed.
    assert after["timing"]["overruns"] == timing["overruns"]
    assert after["timing"]["cycles"] - timing["cycles"] >= int(elapsed_s / CYCLE_S) - 2
    shown = subprocess.run(
        socgw_command("status", "--socket", str(served.gateway.status_socket)),
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=True,
    ).stdout
    restarts = now["restarts"]
    plural = "" if restarts == 1 else "s"
    assert (
        f"{section} running (pid {now['pid']}, {restarts} restart{plural}, last: killed by {signalled.name})"
        in shown
    )
    crash_lines = [line for line in served.gateway.output if f"(pid {before['pid']}) killed by" in line]
    assert len(crash_lines) == 1, crash_lines
    assert f"northbound {section} (pid {before['pid']}) killed by {signalled.name}" in crash_lines[0]


def test_a_child_that_keeps_failing_is_restarted_with_a_growing_delay_then_serves(served: Served) -> None:
    """Last in this module: it leaves the DNP3 child's backoff grown."""
    before = served.adapter("dnp3")
    lines_before = len(served.gateway.output)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        os.kill(before["pid"], signal.SIGKILL)
        until(lambda: served.adapter("dnp3")["state"] == "restarting")
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind((LOOPBACK, served.dnp3_port))  # the restarted outstation cannot listen
        squatter.listen()
        until(lambda: served.adapter("dnp3")["restarts"] >= before["restarts"] + 4)
        failing = served.adapter("dnp3")
        assert failing["last_exit"] == "exited with status 1"
    until(lambda: served.adapter("dnp3")["state"] == "running")
    assert dnp3_soc_counts(served.dnp3_port) == [round(soc * 10) for soc in core_socs(served)]
    delays = [
        float(line.split("restarting it in ")[1].split(" s")[0])
        for line in served.gateway.output[lines_before:]
        if "northbound dnp3 (pid" in line and "restarting it in" in line
    ]
    # Doubling from 0.1 s (0.2 s here: the SIGKILL test above restarted this child less than 30 s ago),
    # capped: never a restart storm.
    assert len(delays) >= 4 and delays[0] in (0.1, 0.2), delays
    assert all(later == min(10.0, 2 * earlier) for earlier, later in itertools.pairwise(delays))
    cannot = [line for line in served.gateway.output[lines_before:] if "cannot serve" in line]
    assert cannot and f"{LOOPBACK}:{served.dnp3_port}" in cannot[0], cannot
