"""The web view and `/metrics`: what operators look at in a browser and what Prometheus scrapes.

    settings.py    the `northbound.web` section of the site config, checked (nothing bound)
    login.py       scrypt password hashes for the login (`python -m gateway.northbound.web.login`)
    history.py     the last hour of SOC, recent decisions and faults, fault counts, cycle intervals (pure)
    document.py    one cycle as the browser's JSON, through the named quantities
    metrics.py     the Prometheus families, read from the newest snapshot at scrape time
    server.py      the adapter: aiohttp on its own thread; the page, server-sent events, /metrics
    static/        the page, its script and style: everything ships in the package (no CDN)

Like the protocol adapters it is handed every cycle's snapshot with `publish`; it submits no commands
(the view is read-only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.config import SiteConfig
from gateway.northbound.adapter import Listener, Submit
from gateway.northbound.web.settings import SECTION, parse_settings

if TYPE_CHECKING:
    from gateway.northbound.web.server import WebAdapter

__all__ = ["SECTION", "check", "create"]


def check(site: SiteConfig) -> Listener | None:
    """Check the section; ConfigError lists every problem with file:line:column."""
    settings = parse_settings(site)
    return None if settings is None else Listener(settings.host, settings.port)


def create(site: SiteConfig, submit: Submit) -> WebAdapter | None:
    """The web adapter for the site's `northbound.web` section (not started), or None without one."""
    settings = parse_settings(site)
    if settings is None:
        return None
    from gateway.northbound.web.server import WebAdapter  # aiohttp loads only when the view is served

    profiles = {pack.node_id: pack.origin for pack in site.served_packs}
    return WebAdapter(settings, site.name, profiles, site.cycle_ms / 1000.0)
