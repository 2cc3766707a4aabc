"""`allow:` and the front door's limits, the same in every listening section: defaults, values, and each
mistake reported at its file:line:column with the remedy."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config
from gateway.northbound.dnp3.settings import parse_settings as dnp3_settings
from gateway.northbound.iec61850.settings import load_settings as iec61850_settings
from gateway.northbound.section import LOCALHOST
from gateway.northbound.web.settings import parse_settings as web_settings
from tests.conftest import PROFILES

HEAD = """\
site: {name: door-test, cycle_ms: 100}
nodes:
  - {id: pack-01, host: 127.0.0.1, port: 15999, profile: microstore/mp2000}
northbound:
"""


def site(tmp_path: Path, section: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(HEAD + section)
    return path


def test_every_listening_section_allows_only_this_machine_by_default(tmp_path: Path) -> None:
    config = load_config(site(tmp_path, "  dnp3: {}\n  iec61850: {}\n  web: {}\n"), [PROFILES])
    dnp3 = dnp3_settings(config)
    iec = iec61850_settings(config)
    web = web_settings(config)
    assert dnp3 is not None and iec is not None and web is not None
    assert dnp3[0].admission.allow == iec[0].admission.allow == web.allow == LOCALHOST
    assert (dnp3[0].admission.first_frame_s, dnp3[0].admission.idle_s, dnp3[0].admission.max_sessions) == (
        5,
        90,
        1,
    )
    assert iec[0].admission.max_sessions == 4


def test_allow_and_limits_are_read(tmp_path: Path) -> None:
    text = (
        "  dnp3:\n    allow: [10.1.2.0/24, 10.9.9.7/32, 'fd00::/64']\n    first_frame_s: 2.5\n"
        "    idle_s: 0\n    connects_per_min: 30\n  iec61850: {max_sessions: 2, allow: [192.168.0.0/16]}\n"
    )
    config = load_config(site(tmp_path, text), [PROFILES])
    dnp3, iec = dnp3_settings(config), iec61850_settings(config)
    assert dnp3 is not None and iec is not None
    admission = dnp3[0].admission
    assert [str(network) for network in admission.allow] == ["10.1.2.0/24", "10.9.9.7/32", "fd00::/64"]
    assert (admission.first_frame_s, admission.idle_s, admission.connects_per_min) == (2.5, 0.0, 30)
    assert iec[0].admission.max_sessions == 2
    assert iec[0].admission.allow == (ipaddress.ip_network("192.168.0.0/16"),)


@pytest.mark.parametrize(
    ("section", "position", "expected"),
    [
        ("  dnp3:\n    allow: 10.1.2.0/24\n", "6:12", "`allow` must be a list of IP networks"),
        ("  dnp3:\n    allow: [10.1.2.0/24, scada-1]\n", "6:26", "'scada-1' is not an IP network"),
        ("  dnp3:\n    allow: [10.1.2.7/24]\n", "6:13", "host bits are set"),
        ("  dnp3:\n    allow: []\n", "6:12", "`allow` is empty"),
        ("  iec61850:\n    allow: [300.1.2.0/24]\n", "6:13", "write e.g. 10.1.2.0/24"),
        ("  web:\n    allow:\n      - 10.0.0.0/8\n      - 10.0.0.1/33\n", "8:9", "not an IP network"),
        ("  dnp3:\n    first_frame_s: 0\n", "6:20", "`first_frame_s` must be a number 0.1..60 s"),
        ("  dnp3:\n    max_sessions: 2\n", "6:5", "unknown key `max_sessions`"),
        ("  iec61850:\n    max_sessions: 6\n", "6:19", "`max_sessions` must be a whole number 1..5"),
        (
            "  dnp3:\n    tls: {ca: a, cert: b, key: c, clients: ['sha256:12']}\n",
            "6:45",
            "is not a SHA-256 fingerprint",
        ),
    ],
)
def test_a_bad_allow_or_limit_is_reported_at_its_line(
    tmp_path: Path, section: str, position: str, expected: str
) -> None:
    path = site(tmp_path, section)
    config = load_config(path, [PROFILES])
    with pytest.raises(ConfigError) as raised:
        dnp3_settings(config)
        iec61850_settings(config)
        web_settings(config)
    message = str(raised.value)
    assert expected in message
    assert f"{path}:{position}:" in message
