"""The `northbound.web` section: off unless configured, a login beyond loopback, TLS files, hashes."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config
from gateway.northbound.registry import check_sections
from gateway.northbound.web.login import PasswordHashError, hash_password, parse_hash, verify_password
from gateway.northbound.web.settings import parse_settings
from tests.conftest import PROFILES, REPO
from tests.northbound.web.support import self_signed

NODES = "nodes: []\n"


def _config(tmp_path: Path, web: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(f"{NODES}northbound:\n  web:\n{web}")
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        check_sections(load_config(path, [PROFILES]))
    return [str(problem) for problem in raised.value.problems]


def test_the_packaged_config_serves_no_web_view() -> None:
    assert parse_settings(load_config(REPO / "packaging/gateway.yaml", [PROFILES])) is None


def test_binding_beyond_loopback_without_a_login_is_refused_with_its_line(tmp_path: Path) -> None:
    path = _config(tmp_path, "    host: 0.0.0.0\n    port: 8080\n")
    [problem] = _problems(path)
    assert problem.startswith(f"{path}:4:")  # the `host` line
    assert "without a login" in problem and "gateway.northbound.web.login" in problem


def test_a_login_makes_any_address_acceptable(tmp_path: Path) -> None:
    password_hash = hash_password("correct horse")
    path = _config(
        tmp_path, f"    host: 0.0.0.0\n    login: {{user: operator, password_hash: '{password_hash}'}}\n"
    )
    settings = parse_settings(load_config(path, [PROFILES]))
    assert settings is not None and settings.login is not None
    assert settings.login.user == "operator" and settings.address == "http://0.0.0.0:8080/"


def test_bad_keys_hashes_and_tls_files_are_reported_with_their_lines(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        "    prot: 1\n"
        "    login: {user: operator, password_hash: hunter2}\n"
        "    tls: {cert: missing.pem, key: missing.key}\n",
    )
    problems = _problems(path)
    assert len(problems) == 4, problems  # each missing TLS file is named
    assert problems[0].startswith(f"{path}:4:") and "unknown key `prot`" in problems[0]
    assert any(p.startswith(f"{path}:6:") and "missing.pem does not exist" in p for p in problems)
    assert any(p.startswith(f"{path}:6:") and "missing.key does not exist" in p for p in problems)
    assert any(p.startswith(f"{path}:5:") and "password hash" in p for p in problems)


def test_tls_files_that_belong_together_are_accepted(tmp_path: Path) -> None:
    self_signed(tmp_path)
    path = _config(tmp_path, "    tls: {cert: web.pem, key: web.key}\n")
    settings = parse_settings(load_config(path, [PROFILES]))
    assert settings is not None and settings.scheme == "https"
    assert settings.ssl_context() is not None


def test_password_hashes_verify_and_reject() -> None:
    stored = hash_password("correct horse")
    assert verify_password("correct horse", stored)
    assert not verify_password("correct hors", stored)
    assert stored != hash_password("correct horse")  # salted
    with pytest.raises(PasswordHashError, match="make one"):
        parse_hash("scrypt$3$8$1$AAAA$AAAA")  # N not a power of two
