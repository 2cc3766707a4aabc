"""A gateway (engine + the web adapter) on simulated packs, driven cycle by cycle from a test."""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from gateway.config import SiteConfig
from gateway.engine import Engine
from gateway.northbound.registry import create_adapters
from gateway.northbound.web.server import PUSH_PERIOD_S, WebAdapter
from gateway.sim.fleet import Endpoint
from gateway.snapshot import CycleSnapshot
from tests.conftest import REPO
from tests.test_engine import site_config, until_online


def web_site_config(tmp_path: Path, endpoints: Sequence[Endpoint], port: int, extra: str = "") -> SiteConfig:
    section = f"northbound:\n  web:\n    host: 127.0.0.1\n    port: {port}\n{extra}"
    return site_config(tmp_path, endpoints, section)


def documented_families() -> list[str]:
    """The family names in the table of docs/web.md."""
    text = (REPO / "docs/web.md").read_text()
    return re.findall(r"^\| `([a-z_]+)` \| (?:counter|gauge|histogram) \|", text, re.MULTILINE)


def get(
    url: str, auth: tuple[str, str] | None = None, context: ssl.SSLContext | None = None
) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


class Gateway:
    """The engine with every adapter the config names, started; cycles run when the test asks."""

    def __init__(self, config: SiteConfig) -> None:
        self.engine = Engine(config)
        adapters = create_adapters(config, self.engine.submit)
        self.web = next(adapter for adapter in adapters if isinstance(adapter, WebAdapter))
        self.engine.publishers.append(self.web)

    async def __aenter__(self) -> Gateway:
        self.web.start()
        await self.engine.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.engine.shutdown()
        self.web.stop()

    async def online(self, packs: int) -> CycleSnapshot:
        return await until_online(self.engine, packs)

    async def cycles(self, count: int) -> CycleSnapshot:
        for _ in range(count):
            await self.engine.run_cycle()
            await asyncio.sleep(0.1)
        assert self.engine.last is not None
        await asyncio.sleep(2.5 * PUSH_PERIOD_S)  # the server's thread takes the last snapshot
        return self.engine.last

    async def get(
        self, path: str, auth: tuple[str, str] | None = None, context: ssl.SSLContext | None = None
    ) -> tuple[int, str]:
        return await asyncio.to_thread(get, f"{self.web.settings.address.rstrip('/')}{path}", auth, context)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (openssl), valid two days."""
    cert, key = directory / "web.pem", directory / "web.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-subj", "/CN=socgw", "-addext", "subjectAltName=IP:127.0.0.1", "-days", "2",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key
