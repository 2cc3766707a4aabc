"""IEC 61850 MMS server: the fleet and each pack as logical devices, setpoints as controls.

    settings.py  the `northbound.iec61850` section of the site config, checked (no stack loaded)
    plan.py      which logical devices the site gets (fleet, one per pack) and their names
    model.py     the plan built as a libiec61850 data model; what each data attribute publishes
    updater.py   the thread that writes each cycle's changed values, quality and time into the model
    controls.py  check and operate handlers (libiec61850's thread) -> site commands
    server.py    the running server: model, TLS, controls, updater, stderr capture; close()
    native.py    the data-model lock and updates through ctypes (the GIL-safe path)
    stderr.py    libiec61850's C stderr into Python log records
    scl.py       the SCL ICD file describing exactly the model served
    adapter.py   the adapter the daemon starts, publishes to and stops

The map itself (`mappings/iec61850/*.yaml`) is loaded by `gateway.mapping.iec61850`. libiec61850
loads only when the server starts, so checking a config never loads it.
"""

from __future__ import annotations

from gateway.config import SiteConfig
from gateway.northbound.adapter import Listener, Submit
from gateway.northbound.iec61850.adapter import Iec61850Adapter
from gateway.northbound.iec61850.settings import SECTION, load_settings
from gateway.northbound.section import DoorPlan, behind_door

__all__ = ["SECTION", "check", "create", "door"]


def check(site: SiteConfig) -> Listener | None:
    """Check the section, its map and the planned model; ConfigError lists every problem."""
    loaded = load_settings(site)
    return None if loaded is None else Listener(loaded[0].host, loaded[0].port)


def door(site: SiteConfig) -> DoorPlan | None:
    """What the front door serves for this section (its public address, allow-list, limits and TLS)."""
    loaded = load_settings(site)
    return None if loaded is None else DoorPlan.of(SECTION, loaded[0])


def create(site: SiteConfig, submit: Submit, private: Listener | None = None) -> Iec61850Adapter | None:
    """The server for the site's `northbound.iec61850` section (not started), or None without one.
    With `private`, it listens there in plain TCP behind the front door, which terminates TLS."""
    loaded = load_settings(site)
    if loaded is None:
        return None
    settings, plan = loaded
    settings = behind_door(settings, private)
    return Iec61850Adapter(settings, plan, submit)
