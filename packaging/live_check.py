"""Run the installed gateway as socgw.service would, and check it from outside as systemd and SCADA do.

Usage (as root, from the repository's dev environment, which has the independent clients):
    .venv/bin/python packaging/live_check.py default   # the shipped /etc/socgw/gateway.yaml
    .venv/bin/python packaging/live_check.py fleet     # commission it for a simulated fleet, then run

`packaging/deb-test` calls it after installing the .deb; the directories systemd would create from the
unit (state, logs, runtime) must exist. The gateway runs as the user socgw with CAP_NET_BIND_SERVICE as
its only capability (setpriv stands in for systemd), with NOTIFY_SOCKET and WATCHDOG_USEC set; this
script is the notify socket. It must see READY=1, then watchdog pings from the control loop; the DNP3
outstation on 20000 must answer an integrity poll from dnp3py (an independent master) and the MMS
server on 102 a read from the `iec61850` client (an independent implementation); SIGTERM must end it
with STOPPING=1 and exit status 0. `fleet` first starts `socgw simulate` (four packs, as nobody) and
adds its packs to /etc/socgw/gateway.yaml: the local edit that the upgrade check then expects to keep.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import queue
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dnp3.master import DefaultSOEHandler, Master, MasterConfig, MasterTcpRunner
from iec61850 import FC, IedConnection

SOCGW = "/usr/bin/socgw"
CONFIG = Path("/etc/socgw/gateway.yaml")
STATUS_SOCKET = Path("/run/socgw/status.sock")
BALANCING_LOG = Path("/var/log/socgw/balancing.log")
# What the shipped config serves (packaging/gateway.yaml).
DNP3_PORT = 20000
DNP3_OUTSTATION_ADDRESS = 10
DNP3_MASTER_ADDRESS = 1
MMS_PORT = 102
IED_NAME = "SOCGW"
# The default maps: AI 27 (AN2018 "number of batteries") and the fleet device's ZBAT1.PackCnt.
DNP3_PACK_COUNT_INDEX = 27
MMS_PACK_COUNT = f"{IED_NAME}FLEET/ZBAT1.PackCnt.stVal"

PACKS = 4
CAP_NET_BIND_SERVICE = 1 << 10
WATCHDOG_USEC = 2_000_000  # pings every second
START_TIMEOUT_S = 60.0
WATCHDOG_PINGS = 2
WATCHDOG_WAIT_S = 10.0
NODES_GOOD_WAIT_S = 30.0
STOP_TIMEOUT_S = 25.0  # the unit's TimeoutStopSec plus a margin
CLIENT_ATTEMPTS = 3  # a fresh MMS association may lose its first request (notes/iec61850.md)
SERVICE_ENV = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "HOME": "/var/lib/socgw",
    "STATE_DIRECTORY": "/var/lib/socgw",
    "LOGS_DIRECTORY": "/var/log/socgw",
    "RUNTIME_DIRECTORY": "/run/socgw",
    "CONFIGURATION_DIRECTORY": "/etc/socgw",
}
SIM_LINE = re.compile(r"^(?P<pack>\S+) \S+ fw \S+ (?P<host>[\d.]+):(?P<port>\d+) unit (?P<unit>\d+)$")


class CheckFailed(Exception):
    """A check of the installed gateway failed; the message says which and what was seen."""


def say(message: str) -> None:
    print(f"live-check: {message}", flush=True)


@dataclass
class NotifySocket:
    """The service manager's side of sd_notify: an abstract datagram socket, as systemd offers."""

    name: str = field(default_factory=lambda: f"socgw-deb-test-{os.getpid()}")
    messages: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name)

    @property
    def address(self) -> str:
        return "@" + self.name

    def count(self, line: str) -> int:
        return sum(line in message.splitlines() for message in self.messages)

    def wait_for(self, line: str, times: int, timeout_s: float, alive: Callable[[], None]) -> None:
        """Collect notifications until `line` arrived `times` times; `alive` raises if the gateway died."""
        deadline = time.monotonic() + timeout_s
        while self.count(line) < times:
            alive()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CheckFailed(
                    f"{line} arrived {self.count(line)} time(s) in {timeout_s:g} s, expected {times}; "
                    f"notifications: {self.messages}"
                )
            self.sock.settimeout(min(remaining, 0.5))
            with contextlib.suppress(TimeoutError):
                self.messages.append(self.sock.recv(4096).decode())

    def drain(self) -> None:
        self.sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:
                self.messages.append(self.sock.recv(4096).decode())

    def close(self) -> None:
        self.sock.close()


class LineReader:
    """A child's stdout, line by line, with a deadline (a thread reads; the pipe never blocks us)."""

    def __init__(self, stream: object) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        thread.start()

    def _pump(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def next_line(self, deadline: float) -> str | None:
        try:
            line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise CheckFailed(f"no output in time; so far: {self.seen}") from None
        if line is not None:
            self.seen.append(line)
        return line


@contextlib.contextmanager
def simulator(packs: int) -> Iterator[list[tuple[str, str, int, int]]]:
    """`socgw simulate` from the package, as the user nobody, on ephemeral loopback ports."""
    command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", SOCGW, "simulate"]
    command += ["--packs", str(packs), "--base-port", "0"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=SERVICE_ENV, cwd="/"
    )
    try:
        reader = LineReader(process.stdout)
        endpoints: list[tuple[str, str, int, int]] = []
        deadline = time.monotonic() + START_TIMEOUT_S
        while not any(line.startswith("serving ") for line in reader.seen):
            line = reader.next_line(deadline)
            if line is None:
                raise CheckFailed(f"the simulator exited: {reader.seen}")
            if match := SIM_LINE.match(line):
                endpoints.append((match["pack"], match["host"], int(match["port"]), int(match["unit"])))
        if len(endpoints) != packs:
            raise CheckFailed(f"the simulator announced {len(endpoints)} packs, not {packs}: {reader.seen}")
        say(f"simulator: {packs} packs on {', '.join(f'{h}:{p}' for _, h, p, _ in endpoints)}")
        yield endpoints
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def commission(endpoints: list[tuple[str, str, int, int]]) -> None:
    """Replace the shipped `nodes: []` with the simulated packs: an operator's local edit of the conffile."""
    text = CONFIG.read_text(encoding="utf-8")
    if text.count("\nnodes: []\n") != 1:
        raise CheckFailed(f"{CONFIG} has no single `nodes: []` line to commission")
    nodes = "".join(
        f"  - {{ id: {pack}, host: {host}, port: {port}, unit: {unit}, profile: microstore/mp2000 }}\n"
        for pack, host, port, unit in endpoints
    )
    with CONFIG.open("r+", encoding="utf-8") as file:  # in place: owner, group and mode stay
        file.write(text.replace("\nnodes: []\n", "\nnodes:\n" + nodes))
        file.truncate()
    say(f"{CONFIG}: commissioned with {len(endpoints)} nodes (a local edit)")


def check_privileges(pid: int, user: pwd.struct_passwd) -> None:
    """The process runs as socgw with CAP_NET_BIND_SERVICE only, and cannot gain more."""
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    uids = {int(uid) for uid in status["Uid"].split()}
    gids = {int(gid) for gid in status["Gid"].split()}
    if uids != {user.pw_uid} or gids != {user.pw_gid}:
        raise CheckFailed(f"gateway runs as uids {uids} gids {gids}, expected socgw ({user.pw_uid})")
    capabilities = {name: int(status[name], 16) for name in ("CapEff", "CapPrm", "CapBnd", "CapAmb")}
    if any(value != CAP_NET_BIND_SERVICE for value in capabilities.values()):
        shown = {name: hex(value) for name, value in capabilities.items()}
        raise CheckFailed(f"gateway capabilities {shown}, expected only CAP_NET_BIND_SERVICE (0x400)")
    if status["NoNewPrivs"].strip() != "1":
        raise CheckFailed("gateway runs without no_new_privs")
    say(f"gateway pid {pid}: user socgw, capabilities: CAP_NET_BIND_SERVICE only, no_new_privs")


async def dnp3_pack_count() -> int:
    """An integrity poll (class 0123) from dnp3py; the number of packs the outstation publishes."""
    handler = DefaultSOEHandler()
    config = MasterConfig(address=DNP3_MASTER_ADDRESS, outstation_address=DNP3_OUTSTATION_ADDRESS)
    master = Master(handler=handler, config=config)
    async with MasterTcpRunner(
        master=master, host="127.0.0.1", port=DNP3_PORT, response_timeout=5.0
    ) as runner:
        await runner.integrity_poll()
    analogs = handler.analog_inputs
    if DNP3_PACK_COUNT_INDEX not in analogs:
        raise CheckFailed(f"the integrity poll returned no AI {DNP3_PACK_COUNT_INDEX}: {sorted(analogs)}")
    say(f"DNP3 :{DNP3_PORT}: integrity poll answered, {len(analogs)} analog inputs")
    return int(analogs[DNP3_PACK_COUNT_INDEX].value)


async def mms_pack_count() -> int:
    """An MMS association with the server on 102: its logical devices and the fleet's pack count."""
    connection = await IedConnection.connect(f"127.0.0.1:{MMS_PORT}", timeout_ms=5000)
    try:
        devices = await connection.get_server_directory()
        if f"{IED_NAME}FLEET" not in devices:
            raise CheckFailed(f"MMS server directory {devices} lacks {IED_NAME}FLEET")
        count = await connection.read_int32(MMS_PACK_COUNT, FC.ST)
    finally:
        await connection.disconnect()
    say(f"MMS :{MMS_PORT}: association up, logical devices {sorted(devices)}")
    return count


def with_retries(client: Callable[[], int], what: str) -> int:
    errors: list[str] = []
    for _ in range(CLIENT_ATTEMPTS):
        try:
            return client()
        except CheckFailed:
            raise
        except Exception as error:  # any client failure: try again, bounded
            errors.append(f"{type(error).__name__}: {error}")
            time.sleep(1.0)
    raise CheckFailed(f"{what} failed {CLIENT_ATTEMPTS} times: {errors}")


def status_document() -> dict[str, object]:
    done = subprocess.run(
        [SOCGW, "status", "--socket", str(STATUS_SOCKET), "--json"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    if done.returncode != 0:
        raise CheckFailed(f"`socgw status` failed ({done.returncode}): {done.stderr.strip()}")
    document: dict[str, object] = json.loads(done.stdout)
    return document


def wait_nodes_good(packs: int, alive: Callable[[], None]) -> None:
    """`socgw status` (over the status socket, as root) shows every pack polled with good quality."""
    deadline = time.monotonic() + NODES_GOOD_WAIT_S
    while True:
        alive()
        nodes = status_document().get("nodes", [])
        qualities = [node.get("quality") for node in nodes] if isinstance(nodes, list) else []
        if len(qualities) == packs and all(quality == "good" for quality in qualities):
            say(f"socgw status: {packs} nodes, all good")
            return
        if time.monotonic() > deadline:
            raise CheckFailed(f"nodes not all good within {NODES_GOOD_WAIT_S:g} s: {qualities}")
        time.sleep(0.5)


def check_balancing_log(user: pwd.struct_passwd) -> None:
    stat = BALANCING_LOG.stat()
    if stat.st_uid != user.pw_uid:
        raise CheckFailed(f"{BALANCING_LOG} is owned by uid {stat.st_uid}, not socgw")
    lines = BALANCING_LOG.read_text(encoding="utf-8").splitlines()
    if not lines or "request_w" not in json.loads(lines[0]):
        raise CheckFailed(f"{BALANCING_LOG} holds no balancing decision: {lines[:2]}")
    say(f"{BALANCING_LOG}: {len(lines)} decision(s), owned by socgw")


def run_gateway(packs: int, log_path: Path) -> None:
    user = pwd.getpwnam("socgw")
    notify = NotifySocket()
    command = ["setpriv", "--reuid=socgw", "--regid=socgw", "--init-groups", "--no-new-privs"]
    command += ["--inh-caps=-all,+net_bind_service", "--ambient-caps=-all,+net_bind_service"]
    command += ["--bounding-set=-all,+net_bind_service", SOCGW, "run", "-c", str(CONFIG)]
    env = {**SERVICE_ENV, "NOTIFY_SOCKET": notify.address, "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd="/var/lib/socgw", umask=0o027
        )

    def alive() -> None:
        if process.poll() is not None:
            raise CheckFailed(f"the gateway exited with status {process.returncode} before the check ended")

    try:
        started = time.monotonic()
        notify.wait_for("READY=1", 1, START_TIMEOUT_S, alive)
        say(f"READY=1 after {time.monotonic() - started:.1f} s")
        check_privileges(process.pid, user)
        notify.wait_for("WATCHDOG=1", WATCHDOG_PINGS, WATCHDOG_WAIT_S, alive)
        say(f"WATCHDOG=1 x{notify.count('WATCHDOG=1')} (WATCHDOG_USEC={WATCHDOG_USEC})")
        wait_nodes_good(packs, alive)
        dnp3_count = with_retries(lambda: asyncio.run(dnp3_pack_count()), "the DNP3 integrity poll")
        mms_count = with_retries(lambda: asyncio.run(mms_pack_count()), "the MMS read")
        if dnp3_count != packs or mms_count != packs:
            raise CheckFailed(f"pack count published: DNP3 {dnp3_count}, MMS {mms_count}; expected {packs}")
        say(f"both SCADA servers publish the fleet: {packs} pack(s)")
        alive()
        process.send_signal(signal.SIGTERM)
        try:
            status = process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise CheckFailed(f"the gateway did not stop within {STOP_TIMEOUT_S:g} s of SIGTERM") from None
        notify.drain()
        if status != 0 or notify.count("STOPPING=1") != 1:
            raise CheckFailed(
                f"after SIGTERM: exit status {status}, STOPPING=1 x{notify.count('STOPPING=1')}"
            )
        say("SIGTERM: STOPPING=1, exit status 0")
        output = log_path.read_text(encoding="utf-8", errors="replace")
        if "Traceback" in output:
            raise CheckFailed("the gateway printed a traceback")
        if packs:
            check_balancing_log(user)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        notify.close()


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in ("default", "fleet"):
        print(__doc__, file=sys.stderr)
        return 2
    packs = PACKS if argv[1] == "fleet" else 0
    with tempfile.TemporaryDirectory(prefix="socgw-live-") as temp:
        log_path = Path(temp) / "gateway.log"
        try:
            if packs:
                with simulator(packs) as endpoints:
                    commission(endpoints)
                    run_gateway(packs, log_path)
            else:
                run_gateway(packs, log_path)
        except CheckFailed as error:
            say(f"FAILED: {error}")
            if log_path.exists():
                say("the gateway's output:")
                print(log_path.read_text(encoding="utf-8", errors="replace")[-8000:], flush=True)
            return 1
    say(f"{argv[1]}: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
