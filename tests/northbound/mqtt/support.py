"""A real Mosquitto on a free loopback port, and the independent Sparkplug decoder (Eclipse Tahu's
JavaScript `sparkplug-payload`, run by Node.js) subscribed to it; neither shares code with socgw."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import pwd
import queue
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.northbound.pki import Authority, Issued

PEER = Path(__file__).parent / "peer"
DECODER = PEER / "decode.js"


def wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


def broker_certificate(ca: Authority, directory: Path, address: str = "127.0.0.1") -> Issued:
    """The broker's certificate for `address` (the address the client checks), from the test CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "broker")]))
        .issuer_name(ca.name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]), critical=False
        )
        .sign(ca.key, hashes.SHA256())
    )
    issued = Issued(directory / f"broker-{address}.pem", directory / f"broker-{address}.key")
    issued.cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    issued.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return issued


class Broker:
    """mosquitto with a config this test writes: a plain listener, and a mutual-TLS one if asked."""

    def __init__(self, directory: Path, port: int, tls: tuple[Path, Issued, int] | None = None) -> None:
        self.port = port
        self.config = directory / f"mosquitto-{port}.conf"
        # As root mosquitto would switch to its own user, who cannot read this test's files: stay us.
        user = pwd.getpwuid(os.getuid()).pw_name
        lines = [f"user {user}", f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false"]
        if tls is not None:
            ca, cert, tls_port = tls
            lines += [
                f"listener {tls_port} 127.0.0.1", f"cafile {ca}", f"certfile {cert.cert}",
                f"keyfile {cert.key}", "require_certificate true", "tls_version tlsv1.2",
            ]  # fmt: skip
        self.config.write_text("\n".join(lines) + "\n")
        self.log = directory / f"mosquitto-{port}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                ["mosquitto", "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None


class Decoder:
    """node decode.js: one decoded message per line, read by a thread into a queue."""

    def __init__(self, port: int, topic_filter: str = "spBv1.0/#") -> None:
        self.process = subprocess.Popen(
            ["node", str(DECODER), f"mqtt://127.0.0.1:{port}", topic_filter],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=PEER,
        )  # fmt: skip
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        assert self.process.stdout is not None
        threading.Thread(target=self._pump, args=(self.process.stdout,), daemon=True).start()
        first = self.lines.get(timeout=15)
        assert first == {"subscribed": True}, first

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(json.loads(line))

    def next(self, match: Callable[[dict[str, Any]], bool], timeout_s: float = 10.0) -> dict[str, Any]:
        """The next decoded message that `match` accepts (the others are skipped)."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching Sparkplug message within {timeout_s} s")
            try:
                message = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if match(message):
                return message

    def drain(self) -> list[dict[str, Any]]:
        drained = []
        while True:
            try:
                drained.append(self.lines.get_nowait())
            except queue.Empty:
                return drained

    def close(self) -> None:
        self.process.kill()
        self.process.wait(5)


def kind(message: dict[str, Any]) -> str:
    """NBIRTH, DDATA...: the message type of a Sparkplug topic."""
    return str(message["topic"].split("/")[2])


def metrics(message: dict[str, Any]) -> dict[str, Any]:
    """A decoded payload's metrics by name."""
    return {metric["name"]: metric for metric in message["payload"]["metrics"]}


def publish(port: int, topic: str, payload: bytes) -> None:
    """One message from a separate client (mosquitto_pub), as a host would send it."""
    subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-t", topic, "-s", "-q", "1"],
        input=payload, check=True, timeout=10,
    )  # fmt: skip
