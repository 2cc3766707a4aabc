"""The `northbound.mqtt` section: defaults from the site, bad values named with their line, TLS files,
and a client that shares no port with the listening protocols."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config
from gateway.northbound.mqtt.settings import Broker, parse_settings
from gateway.northbound.registry import check_sections, configured_sections
from tests.conftest import PROFILES
from tests.northbound.pki import Pki


def _config(tmp_path: Path, mqtt: str, more: str = "") -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(f"site:\n  name: North Yard/2\nnodes: []\nnorthbound:\n  mqtt:\n{mqtt}{more}")
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        check_sections(load_config(path, [PROFILES]))
    return [str(problem) for problem in raised.value.problems]


def test_defaults_come_from_the_site(tmp_path: Path) -> None:
    settings = parse_settings(load_config(_config(tmp_path, "    keepalive_s: 20\n"), [PROFILES]))
    assert settings is not None
    assert settings.edge_node_id == "North_Yard_2" and settings.group_id == "socgw"
    assert settings.client_id == "socgw-North_Yard_2"
    assert settings.brokers == (Broker("127.0.0.1", 1883),) and settings.keepalive_s == 20
    assert settings.ssl_context() is None


def test_bad_values_are_named_with_their_line(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        "    group_id: a/b\n    username: gw\n    brokers: [{host: 10.0.0.1, port: 0}, {port: 1883}]\n"
        "    keepalive: 5\n",
    )
    problems = _problems(path)
    assert any(p.startswith(f"{path}:6:") and "group_id" in p and "no / + #" in p for p in problems)
    assert any("`username` and `password` go together" in p for p in problems)
    assert any(p.startswith(f"{path}:8:") and "`port` must be" in p for p in problems)
    assert any("a broker has no `host`" in p for p in problems)
    assert any(p.startswith(f"{path}:9:") and "keepalive" in p for p in problems)


def test_tls_files_make_a_tls12_minimum_context(tmp_path: Path, pki: Pki) -> None:
    tls = f"    tls: {{ca: {pki.ca.cert_path}, cert: {pki.master.cert}, key: {pki.master.key}}}\n"
    settings = parse_settings(load_config(_config(tmp_path, tls), [PROFILES]))
    assert settings is not None and settings.brokers == (Broker("127.0.0.1", 8883),)
    context = settings.ssl_context()
    assert context is not None and context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname


def test_an_expired_client_certificate_is_refused_at_check(tmp_path: Path, pki: Pki) -> None:
    tls = f"    tls: {{ca: {pki.ca.cert_path}, cert: {pki.expired.cert}, key: {pki.expired.key}}}\n"
    [problem] = _problems(_config(tmp_path, tls))
    assert "expired" in problem


def test_a_broker_port_is_not_a_port_the_gateway_takes(tmp_path: Path) -> None:
    more = "  web:\n    port: 1883\n"
    path = _config(tmp_path, "    brokers: [{host: 127.0.0.1, port: 1883}]\n", more)
    assert configured_sections(load_config(path, [PROFILES])) == ["web", "mqtt"]


def test_an_adapter_stopped_before_it_started_stops_quietly(tmp_path: Path) -> None:
    from gateway.northbound.mqtt import create

    adapter = create(
        load_config(_config(tmp_path, "    keepalive_s: 20\n"), [PROFILES]), lambda u, apply=True: None
    )
    assert adapter is not None
    adapter.stop()  # a child whose start failed is still stopped: nothing to join, nothing raised
