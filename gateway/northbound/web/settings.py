"""The `northbound.web` section of the site config, checked; nothing is bound here.

Config (`northbound: web:` in the site config; off unless the section is there):

    host: 127.0.0.1            # address to listen on; beyond loopback a login is required
    port: 8080
    tls: {cert: web.pem, key: web.key}      # HTTPS (paths: relative to the config's directory)
    login: {user: operator, password_hash: "scrypt$..."}   # python -m gateway.northbound.web.login
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from gateway.config import ConfigError, SiteConfig
from gateway.northbound.web.login import PasswordHashError, parse_hash
from gateway.profiles.loader import Problem
from gateway.profiles.model import SourceMark
from gateway.yamlsource import Mark, MarkedMap

SECTION = "web"
SETTINGS_KEYS = ("enabled", "host", "port", "tls", "login")
TLS_KEYS = ("cert", "key")
LOGIN_KEYS = ("user", "password_hash")
DEFAULT_PORT = 8080


@dataclass(frozen=True)
class Login:
    user: str
    password_hash: str


@dataclass(frozen=True)
class WebSettings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    cert: Path | None = None  # with `key`: HTTPS
    key: Path | None = None
    login: Login | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.cert is not None else "http"

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}/"

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.cert is None or self.key is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


def is_loopback(host: str) -> bool:
    return ipaddress.ip_address(host).is_loopback


class _Reader:
    """Reads one mapping of the section, collecting problems with their marks."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems

    def problem(self, mark: Mark, message: str) -> None:
        self.problems.append(Problem(SourceMark(mark.file, mark.line, mark.column), message))

    def mapping(self, parent: MarkedMap, key: str, allowed: tuple[str, ...], what: str) -> MarkedMap | None:
        raw = parent.get(key)
        if raw is None:
            return None
        if not isinstance(raw, MarkedMap):
            self.problem(parent.value_mark(key), f"{what} must be a mapping with {', '.join(allowed)}")
            return None
        for name in raw:
            if name not in allowed:
                self.problem(raw.key_mark(name), f"unknown key `{name}` in {what}: use {', '.join(allowed)}")
        return raw

    def text(self, parent: MarkedMap, key: str, what: str) -> str | None:
        value = parent.get(key)
        if not isinstance(value, str) or not value:
            self.problem(parent.value_mark(key), f"{what} needs `{key}`: a non-empty string")
            return None
        return value


def parse_settings(site: SiteConfig) -> WebSettings | None:
    """The `northbound.web` section, or None when absent or `enabled: false`. Raises ConfigError
    listing every problem with file:line:column."""
    northbound = site.northbound
    if SECTION not in northbound:
        return None
    raw = northbound[SECTION]
    mark = northbound.value_mark(SECTION) if isinstance(northbound, MarkedMap) else Mark(site.path, 1, 1)
    problems: list[Problem] = []
    reader = _Reader(problems)
    if raw is None:
        raw = MarkedMap(mark)
    if not isinstance(raw, MarkedMap):
        reader.problem(mark, "northbound.web must be a mapping (host, port, tls, login)")
        raise ConfigError(problems)
    for key in raw:
        if key not in SETTINGS_KEYS:
            reader.problem(
                raw.key_mark(key), f"unknown key `{key}` in northbound.web: use {', '.join(SETTINGS_KEYS)}"
            )
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        reader.problem(raw.value_mark("enabled"), "northbound.web `enabled` must be true or false")
    elif not enabled:
        return None
    host = raw.get("host", "127.0.0.1")
    try:
        ipaddress.ip_address(host if isinstance(host, str) else "")
    except ValueError:
        reader.problem(raw.value_mark("host"), f"northbound.web `host` must be an IP address, not {host!r}")
        host = "127.0.0.1"
    port = raw.get("port", DEFAULT_PORT)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        reader.problem(raw.value_mark("port"), f"northbound.web `port` must be 1..65535, not {port!r}")
        port = DEFAULT_PORT
    config_dir = Path(site.path).resolve().parent if site.path else Path.cwd()
    cert, key = _tls(reader, raw, config_dir)
    login = _login(reader, raw)
    if "login" not in raw and not is_loopback(str(host)):
        reader.problem(
            raw.value_mark("host"),
            f"northbound.web binds {host}, beyond this machine, without a login: add `login: {{user: ..., "
            "password_hash: ...}}` (python -m gateway.northbound.web.login makes the hash), ideally with "
            "`tls`, or bind 127.0.0.1",
        )
    if problems:
        raise ConfigError(problems)
    return WebSettings(str(host), port, cert, key, login)


def _tls(reader: _Reader, section: MarkedMap, config_dir: Path) -> tuple[Path | None, Path | None]:
    raw = reader.mapping(section, "tls", TLS_KEYS, "northbound.web tls")
    if raw is None:
        return None, None
    paths = []
    for name in TLS_KEYS:
        value = reader.text(raw, name, "northbound.web tls")
        if value is not None:
            path = Path(value)
            paths.append(path if path.is_absolute() else config_dir / path)
    if len(paths) != len(TLS_KEYS):
        return None, None
    cert, key = paths
    for path in paths:
        if not path.is_file():
            reader.problem(section.value_mark("tls"), f"TLS file {path} does not exist")
            return None, None
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as error:
        reader.problem(
            section.value_mark("tls"),
            f"TLS certificate {cert} and key {key} cannot be used ({error}): both must be PEM, the key "
            "unencrypted, and the certificate must belong to the key",
        )
        return None, None
    return cert, key


def _login(reader: _Reader, section: MarkedMap) -> Login | None:
    raw = reader.mapping(section, "login", LOGIN_KEYS, "northbound.web login")
    if raw is None:
        return None
    user = reader.text(raw, "user", "northbound.web login")
    password_hash = reader.text(raw, "password_hash", "northbound.web login")
    if user is None or password_hash is None:
        return None
    try:
        parse_hash(password_hash)
    except PasswordHashError as error:
        reader.problem(raw.value_mark("password_hash"), f"northbound.web login `password_hash` {error}")
        return None
    return Login(user, password_hash)
