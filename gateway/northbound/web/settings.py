"""The `northbound.web` section of the site config, checked; nothing is bound here.

Config (`northbound: web:` in the site config; off unless the section is there):

    host: 127.0.0.1            # address to listen on; beyond loopback a login is required
    port: 8080
    tls: {cert: web.pem, key: web.key}      # HTTPS (paths: relative to the config's directory)
    login: {user: operator, password_hash: "scrypt$..."}   # python -m gateway.northbound.web.login
    allow: [10.1.2.0/24]       # who may connect (default: this machine only); others are closed unanswered
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from gateway.config import ConfigError, SiteConfig
from gateway.diagnostics import Checker, MarkedMap
from gateway.diagnostics.fields import flag, section, table, text, whole
from gateway.northbound.section import (
    ALLOW_FIELD,
    LOCALHOST,
    Network,
    config_dir,
    listen_host,
    open_section,
    parse_allow,
)
from gateway.northbound.web.login import PasswordHashError, parse_hash

SECTION = "web"
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
    allow: tuple[Network, ...] = LOCALHOST

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


# --- The format: keys and what they hold (`socgw config schema` is made from these tables) -----------

TLS_FIELDS = table(
    {
        "cert": text("PEM certificate chain of this server (relative to the config's directory)."),
        "key": text("PEM private key of the certificate, unencrypted."),
    }
)
LOGIN_FIELDS = table(
    {
        "user": text("The user name asked for."),
        "password_hash": text("scrypt hash of the password: python -m gateway.northbound.web.login"),
    }
)
FIELDS = table(
    {
        "enabled": flag("false keeps the section but serves nothing."),
        "host": text("IP address to listen on; beyond loopback a login is required.", rule="an IP address"),
        "port": whole("TCP port of the web view and /metrics.", 1, 65535),
        "tls": section("HTTPS with this certificate and key.", TLS_FIELDS, required=("cert", "key")),
        "login": section(
            "A login for the view and /metrics.", LOGIN_FIELDS, required=("user", "password_hash")
        ),
        "allow": ALLOW_FIELD,
    }
)


def parse_settings(site: SiteConfig) -> WebSettings | None:
    """The `northbound.web` section, or None when absent or `enabled: false`. Raises ConfigError
    listing every problem with file:line:column."""
    checker = Checker()
    raw = open_section(site, SECTION, FIELDS, checker)
    if raw is None or not checker.value(raw, "enabled", FIELDS["enabled"], True):
        return None
    host = listen_host(checker, raw, FIELDS["host"], "127.0.0.1")
    port = checker.value(raw, "port", FIELDS["port"], DEFAULT_PORT)
    cert, key = _tls(checker, raw, config_dir(site))
    login = _login(checker, raw)
    allow = parse_allow(checker, raw)
    if "login" not in raw and not is_loopback(host):
        checker.problem(
            raw.value_mark("host"),
            f"northbound.web binds {host}, beyond this machine, without a login: add `login: {{user: ..., "
            "password_hash: ...}}` (python -m gateway.northbound.web.login makes the hash), ideally with "
            "`tls`, or bind 127.0.0.1",
        )
    if checker.problems:
        raise ConfigError(checker.problems)
    return WebSettings(host, port, cert, key, login, allow)


def _tls(checker: Checker, settings: MarkedMap, config_dir: Path) -> tuple[Path | None, Path | None]:
    """A server certificate and key (no client CA: browsers log in instead of presenting certificates)."""
    if "tls" not in settings:
        return None, None
    raw = checker.section(settings, "tls", TLS_FIELDS)
    paths = []
    for name, field in TLS_FIELDS.items():
        value = checker.value(raw, name, field, where="`northbound.web.tls`")
        if value is None:
            continue
        path = Path(value) if Path(value).is_absolute() else config_dir / value
        if not path.is_file():
            checker.problem(raw.value_mark(name), f"TLS `{name}` file {path} does not exist")
            continue
        paths.append(path)
    if len(paths) != len(TLS_FIELDS):
        return None, None
    cert, key = paths
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as error:
        checker.problem(
            settings.value_mark("tls"),
            f"TLS certificate {cert} and key {key} cannot be used ({error}): both must be PEM files, the "
            "key unencrypted, and the certificate must belong to the key",
        )
        return None, None
    return cert, key


def _login(checker: Checker, settings: MarkedMap) -> Login | None:
    if "login" not in settings:
        return None
    raw = checker.section(settings, "login", LOGIN_FIELDS)
    user = checker.value(raw, "user", LOGIN_FIELDS["user"], where="`northbound.web.login`")
    password_hash = checker.value(
        raw, "password_hash", LOGIN_FIELDS["password_hash"], where="`northbound.web.login`"
    )
    if user is None or password_hash is None:
        return None
    try:
        parse_hash(password_hash)
    except PasswordHashError as error:
        checker.problem(raw.value_mark("password_hash"), f"northbound.web login `password_hash` {error}")
        return None
    return Login(user, password_hash)
