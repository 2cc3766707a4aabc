"""The `northbound.dnp3` section: defaults, link addresses, and every mistake reported with its line."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import uvloop

from gateway.config import ConfigError, load_config
from gateway.northbound.dnp3 import create
from gateway.northbound.dnp3.settings import EventBuffers, parse_settings
from gateway.sim.fleet import Endpoint
from tests.conftest import LOOPBACK, PROFILES, free_port
from tests.northbound.dnp3.support import connected_master, dnp3_site_config

pytestmark = pytest.mark.wire  # real stacks, sockets on loopback or child processes

NODE = Endpoint("pack-01", "microstore/mp2000", "1.4.0", LOOPBACK, 15999, 1)


def test_defaults_follow_the_demo_and_the_shipped_map(tmp_path: Path) -> None:
    parsed = parse_settings(dnp3_site_config(tmp_path, [NODE], {}))
    assert parsed is not None
    settings, dnp3_map = parsed
    assert (settings.host, settings.port) == ("127.0.0.1", 20000)
    assert (settings.outstation_address, settings.master_address) == (10, 1)
    assert settings.unsolicited is False and settings.tls is None and settings.rated_power_w is None
    assert settings.event_buffer == EventBuffers()
    assert dnp3_map.path.endswith("mappings/dnp3/default.yaml")
    assert parse_settings(dnp3_site_config(tmp_path, [NODE], {"enabled": False})) is None


def test_no_section_means_no_outstation(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        json.dumps({"nodes": [{"id": "a", "host": LOOPBACK, "port": 1502, "profile": "microstore/mp2000"}]})
    )
    assert create(load_config(path, [PROFILES]), lambda update, apply=True: None) is None


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"prot": 20000}, "unknown key `prot`"),
        ({"port": 70000}, "`port` must be a whole number 1..65535"),
        ({"host": "localhost"}, "`host` must be an IP address"),
        ({"outstation_address": 1}, "link addresses must differ"),
        ({"master_address": 65535}, "`master_address` must be a whole number 0..65519"),
        ({"unsolicited": "yes"}, "`unsolicited` must be true or false"),
        ({"event_buffer": {"analog": 70000}}, "`analog` must be a whole number 0..65535 events"),
        ({"event_buffer": {"counter": 10}}, "unknown key `counter` in `event_buffer`"),
        ({"rated_power_w": 0}, "`rated_power_w` must be a number > 0 W"),
        ({"map": "nonexistent"}, "no DNP3 map named `nonexistent`"),
        ({"tls": {"ca": "ca.pem"}}, "`tls` needs `cert`"),
    ],
)
def test_a_bad_setting_is_reported_with_its_line(
    tmp_path: Path, section: dict[str, object], expected: str
) -> None:
    config = dnp3_site_config(tmp_path, [NODE], section)
    with pytest.raises(ConfigError) as raised:
        create(config, lambda update, apply=True: None)
    message = str(raised.value)
    assert expected in message
    assert message.startswith(f"{config.path}:")


def test_a_fleet_larger_than_the_map_is_refused(tmp_path: Path) -> None:
    small = tmp_path / "small.yaml"
    small.write_text(
        'map_version: "1.0.0"\nmax_nodes: 1\nnode_blocks:\n  - name: b\n    type: analog_input\n'
        "    start: 0\n    stride: 1\n    points:\n"
        '      - { offset: 0, name: Soc, source: node.soc_pct, scale: 0.1, unit: "%", class: 1,'
        " deadband: 5 }\n"
    )
    second = Endpoint("pack-02", "microstore/mp2000", "1.4.0", LOOPBACK, 15998, 1)
    config = dnp3_site_config(tmp_path, [NODE, second], {"map": str(small)})
    with pytest.raises(ConfigError, match=r"has 2 nodes but DNP3 map .*small.yaml has room for 1"):
        create(config, lambda update, apply=True: None)


def test_only_the_configured_master_address_is_answered(tmp_path: Path) -> None:
    port = free_port()
    section = {"port": port, "outstation_address": 1234, "master_address": 77, "rated_power_w": 5000}
    adapter = create(dnp3_site_config(tmp_path, [NODE], section), lambda update, apply=True: None)
    assert adapter is not None

    async def scenario() -> tuple[float, bool]:
        adapter.start()
        try:
            async with connected_master(port, address=77, outstation_address=1234) as master:
                await master.integrity_poll()
                answered = master.handler.analog_inputs[32].value
            try:
                async with connected_master(port, address=1, outstation_address=1234, timeout_s=1.0) as other:
                    await other.integrity_poll()
                stranger_answered = True
            except Exception:
                stranger_answered = False
            return answered, stranger_answered
        finally:
            adapter.stop()

    answered, stranger_answered = uvloop.run(asyncio.wait_for(scenario(), 30))
    assert answered == 0.0  # reachable (nothing published without an engine)
    assert stranger_answered is False
