"""What the front door tests share: client network namespaces joined to this one by veth pairs, the
gateway's config, and the peers run inside a namespace."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.sim.fleet import Endpoint
from tests.conftest import REPO

PEER_TIMEOUT_S = 60.0


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@dataclass(frozen=True)
class Namespace:
    """A client namespace: its name, its own address and the address of this (the gateway's) side."""

    name: str
    address: str
    gateway: str

    def run(self, *argv: str, timeout: float = PEER_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.name, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
            check=False,
        )

    def peer(self, *args: str, timeout: float = PEER_TIMEOUT_S) -> dict[str, Any]:
        """One `peers` command run in this namespace: its JSON document."""
        result = self.run(sys.executable, "-m", "tests.northbound.frontdoor.peers", *args, timeout=timeout)
        lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
        assert lines, f"the peer printed nothing: {result.stdout!r} {result.stderr!r}"
        document: dict[str, Any] = json.loads(lines[-1])
        return document


@contextlib.contextmanager
def client_namespaces(count: int, *, into: str | None = None) -> Iterator[list[Namespace]]:
    """`count` namespaces, each on a veth pair of its own subnet to this namespace (or to `into`), with a
    default route back; all removed at the end (their veths go with them)."""
    tag = f"fd{os.getpid() % 100000}"
    base = 100 + os.getpid() % 100  # 10.<base>.<i>.0/24: one subnet per client
    made: list[str] = []
    spaces = []
    try:
        for index in range(1, count + 1):
            name = f"{tag}c{index}"
            ip("netns", "add", name)
            made.append(name)
            outer, inner = f"{tag}h{index}", f"{tag}n{index}"
            gateway, address = f"10.{base}.{index}.1", f"10.{base}.{index}.2"
            ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            ip("link", "set", inner, "netns", name)
            if into is not None:
                ip("link", "set", outer, "netns", into)
            here = ["-n", into] if into is not None else []
            ip(*here, "addr", "add", f"{gateway}/24", "dev", outer)
            ip(*here, "link", "set", outer, "up")
            ip("-n", name, "addr", "add", f"{address}/24", "dev", inner)
            ip("-n", name, "link", "set", inner, "up")
            ip("-n", name, "link", "set", "lo", "up")
            ip("-n", name, "route", "add", "default", "via", gateway)
            spaces.append(Namespace(name, address, gateway))
        yield spaces
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30, check=False)


@contextlib.contextmanager
def gateway_namespace() -> Iterator[str]:
    """An empty namespace for the gateway's side (loopback up), removed at the end."""
    name = f"fd{os.getpid() % 100000}gw"
    ip("netns", "add", name)
    try:
        ip("-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30, check=False)


def door_config(
    tmp_path: Path, endpoints: Sequence[Endpoint], northbound: Mapping[str, Mapping[str, Any]]
) -> Path:
    """A site config for the simulated packs with these `northbound:` sections (JSON is YAML)."""
    document: dict[str, Any] = {
        "site": {"name": "front-door", "cycle_ms": 100},
        "nodes": [
            {"id": e.pack_id, "host": e.host, "port": e.port, "unit": e.unit_id, "profile": e.profile_key}
            for e in endpoints
        ],
        "command": {"default_request_w": 0},
        "logging": {"level": "info", "balancing_log": None},
        "status": {"socket": str(tmp_path / "status.sock")},
        "northbound": {name: dict(section) for name, section in northbound.items()},
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(json.dumps(document, indent=2, default=str))
    return path


def private_port(output: Sequence[str], section: str) -> int:
    """The stack's private port, from the front door's start line."""
    for line in output:
        found = re.search(rf"front door {section} on .* behind it on 127\.0\.0\.1:(\d+)", line)
        if found:
            return int(found.group(1))
    raise AssertionError(f"no front door line for {section}: {output}")


def door_counts(status: Mapping[str, Any], section: str) -> dict[str, int]:
    for adapter in status.get("adapters", []):
        if adapter.get("section") == section:
            counts: dict[str, int] = adapter.get("front_door", {})
            return counts
    raise AssertionError(f"no adapter {section} in {status}")
