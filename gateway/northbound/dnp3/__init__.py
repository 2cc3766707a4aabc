"""DNP3 outstation: the fleet as a DNP3 point list, a master's controls as site commands.

    settings.py    the `northbound.dnp3` section of the site config, checked (no stack loaded)
    points.py      snapshot -> point values with flags, through the map (which point changed, and how)
    controls.py    the stack's command callbacks (its I/O thread): point -> control target, refusal -> status
    outstation.py  the adapter: builds the opendnp3 stack (yadnp3), publishes each cycle, stops cleanly

The map itself (`mappings/dnp3/*.yaml`) is loaded by `gateway.mapping.dnp3`. opendnp3 loads only
when an adapter is created, so checking a config never loads the C++ stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.config import SiteConfig
from gateway.northbound.adapter import Listener, Submit
from gateway.northbound.dnp3.settings import SECTION, parse_settings
from gateway.northbound.section import DoorPlan, behind_door

if TYPE_CHECKING:
    from gateway.northbound.dnp3.outstation import Dnp3Outstation

__all__ = ["SECTION", "check", "create", "door"]


def check(site: SiteConfig) -> Listener | None:
    """Check the section and its map; ConfigError lists every problem with file:line:column."""
    parsed = parse_settings(site)
    return None if parsed is None else Listener(parsed[0].host, parsed[0].port)


def door(site: SiteConfig) -> DoorPlan | None:
    """What the front door serves for this section (its public address, allow-list, limits and TLS)."""
    parsed = parse_settings(site)
    return None if parsed is None else DoorPlan.of(SECTION, parsed[0])


def create(site: SiteConfig, submit: Submit, private: Listener | None = None) -> Dnp3Outstation | None:
    """The outstation for the site's `northbound.dnp3` section (not started), or None without one.
    With `private`, it listens there in plain TCP behind the front door, which terminates TLS."""
    parsed = parse_settings(site)
    if parsed is None:
        return None
    from gateway.northbound.dnp3.outstation import Dnp3Outstation  # opendnp3 loads here

    settings, dnp3_map = parsed
    settings = behind_door(settings, private)
    node_ids = [pack.node_id for pack in site.served_packs]
    return Dnp3Outstation(settings, dnp3_map, node_ids, submit, behind_door=private is not None)
