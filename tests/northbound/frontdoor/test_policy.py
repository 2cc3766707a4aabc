"""The gate: the allow-list (IPv4, IPv6, IPv4-mapped IPv6) and the connection rate per source."""

from __future__ import annotations

import ipaddress

from gateway.northbound.frontdoor.policy import BURST_MIN, Gate
from gateway.northbound.frontdoor.secure import listed
from gateway.northbound.section import Admission


def test_only_addresses_in_the_allow_list_pass() -> None:
    gate = Gate(Admission(allow=(ipaddress.ip_network("10.1.2.0/24"), ipaddress.ip_network("fd00::/64"))))
    assert gate.refusal("10.1.2.9", 0.0) is None
    assert gate.refusal("::ffff:10.1.2.10", 0.0) is None  # a dual-stack socket's view of 10.1.2.10
    assert gate.refusal("fd00::5", 0.0) is None
    assert gate.refusal("10.1.3.9", 0.0) == "not-allowed"
    assert gate.refusal("127.0.0.1", 0.0) == "not-allowed"


def test_the_default_allows_only_this_machine() -> None:
    gate = Gate(Admission())
    assert gate.refusal("127.0.0.1", 0.0) is None
    assert gate.refusal("127.9.9.9", 0.0) is None
    assert gate.refusal("::1", 0.0) is None
    assert gate.refusal("192.168.1.10", 0.0) == "not-allowed"


def test_a_source_gets_its_burst_then_its_rate_and_others_are_not_slowed() -> None:
    gate = Gate(Admission(connects_per_min=60))  # burst max(5, 60 // 6) = 10, then 1 a second
    burst = max(BURST_MIN, 60 // 6)
    assert [gate.refusal("127.0.0.2", 0.0) for _ in range(burst)] == [None] * burst
    assert gate.refusal("127.0.0.2", 0.0) == "rate"
    assert gate.refusal("127.0.0.3", 0.0) is None  # another source has its own bucket
    assert gate.refusal("127.0.0.2", 0.5) == "rate"
    assert gate.refusal("127.0.0.2", 1.1) is None  # one token back after a second


def test_client_certificates_are_listed_by_subject_or_fingerprint() -> None:
    fingerprint = "sha256:" + "ab" * 32
    assert listed((), "CN=anyone", fingerprint)
    assert listed(("CN=scada-1,O=Utility",), "CN=scada-1,O=Utility", fingerprint)
    assert listed((fingerprint,), "CN=other", fingerprint)
    assert not listed(("CN=scada-1,O=Utility",), "CN=scada-2,O=Utility", fingerprint)
