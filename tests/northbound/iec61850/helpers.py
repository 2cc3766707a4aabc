"""Shared pieces of the IEC 61850 tests: MMS clients in their own processes, `socgw run` as a process,
and test certificates made with the openssl CLI."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from gateway.status import read_status
from tests.conftest import LOOPBACK, socgw_command

HERE = Path(__file__).resolve().parent
CLIENT = HERE / "client.py"
RUST_CLIENT = HERE / "rust_client.py"
CLIENT_TIMEOUT_S = 60.0
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


@dataclasses.dataclass(frozen=True)
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path  # self-signed: no CA the gateway trusts signed it
    rogue_key: Path


def client_command(
    port: int, *args: str, tls: tuple[Path, Path | None, Path | None] | None = None
) -> list[str]:
    """argv of the libiec61850 client; `tls` = (ca, cert, key), cert/key None for a client without one."""
    command = [sys.executable, str(CLIENT), "--host", LOOPBACK, "--port", str(port)]
    if tls is not None:
        ca, cert, key = tls
        command += ["--ca", str(ca)]
        if cert is not None and key is not None:
            command += ["--cert", str(cert), "--key", str(key)]
    return [*command, *args]


def last_json(output: str) -> dict[str, Any]:
    lines = [line for line in output.splitlines() if line.startswith("{")]
    assert lines, f"the client printed no JSON: {output!r}"
    document: dict[str, Any] = json.loads(lines[-1])
    return document


def run_client(
    port: int, *args: str, tls: tuple[Path, Path | None, Path | None] | None = None
) -> dict[str, Any]:
    """Run the libiec61850 client once; its (last) JSON document."""
    result = subprocess.run(
        client_command(port, *args, tls=tls),
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT_S,
        check=False,
    )
    return last_json(result.stdout + "\n" + result.stderr)


def run_rust_client(port: int, *args: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, str(RUST_CLIENT), "--host", LOOPBACK, "--port", str(port), *args],
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT_S,
        check=False,
    )
    return last_json(result.stdout)


def make_certificates(directory: Path) -> Certificates:
    """A CA, a gateway certificate and a client certificate it signed, and a rogue self-signed one."""
    directory.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, capture_output=True, check=True, timeout=60)

    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=socgw test CA",
    )  # fmt: skip
    for name, subject in (("server", "/CN=127.0.0.1"), ("client", "/CN=scada")):
        openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", subject,
        )  # fmt: skip
        openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2",
        )  # fmt: skip
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "rogue.key", "-out", "rogue.pem",
        "-days", "2", "-subj", "/CN=rogue",
    )  # fmt: skip
    return Certificates(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
        rogue_cert=directory / "rogue.pem",
        rogue_key=directory / "rogue.key",
    )


class GatewayProcess:
    """`socgw run -c CONFIG` in its own process (stderr merged into stdout), stopped with SIGTERM."""

    def __init__(self, config: Path, status_socket: Path, nodes: int) -> None:
        self.config = config
        self.status_socket = status_socket
        self.nodes = nodes
        self.output: list[str] = []
        self.process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> Self:
        self.process = subprocess.Popen(
            socgw_command("run", "-c", str(self.config)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.process.stdout is not None
        self._reader = threading.Thread(target=self._pump, args=(self.process.stdout,), daemon=True)
        self._reader.start()
        try:
            self.wait_for_good_nodes()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def _pump(self, stream: IO[str]) -> None:
        for line in iter(stream.readline, ""):
            self.output.append(line.rstrip("\n"))

    def status(self) -> dict[str, Any]:
        return read_status(self.status_socket)

    def wait_for_good_nodes(self) -> dict[str, Any]:
        """The status once every node is good (the MMS server starts before the status socket)."""
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"socgw run exited with {self.process.returncode}: {self.output}")
            try:
                last = self.status()
            except OSError:
                last = {}
            nodes = last.get("nodes")
            if isinstance(nodes, list) and sum(node["quality"] == "good" for node in nodes) == self.nodes:
                return last
            time.sleep(0.2)
        raise AssertionError(f"the gateway never reported {self.nodes} good nodes: {last} {self.output}")

    def stop(self) -> int:
        process = self.process
        if process is None:
            return 0
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT_S)
        if self._reader is not None:
            self._reader.join(STOP_TIMEOUT_S)
        return process.returncode


def iec_section(port: int, **settings: object) -> str:
    """A `northbound:` YAML section (JSON is YAML) with the IEC 61850 server on `port`."""
    section = {"host": LOOPBACK, "port": port, **settings}
    return "northbound:\n  iec61850: " + json.dumps(section, default=str) + "\n"


def soc_references(devices: Sequence[str]) -> list[str]:
    """REFERENCE FC arguments reading ZBAT1.Soc (value) and its quality in every device."""
    targets: list[str] = []
    for device in devices:
        targets += [f"{device}/ZBAT1.Soc.mag.f", "MX", f"{device}/ZBAT1.Soc.q", "MX"]
    return targets
