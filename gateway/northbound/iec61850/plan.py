"""Which logical devices the MMS server exposes for a site: the fleet's, and one per pack.

Pure (no libiec61850): `socgw validate` plans the model to report name collisions with the config's
line, and the model builder and the ICD writer both work from the same plan.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from gateway import __version__
from gateway.config import ConfigError, SiteConfig
from gateway.diagnostics import Mark, Problem
from gateway.mapping.iec61850 import DeviceSpec, IecMap

# IEC 61850-8-1: an MMS domain name (IED name + LD inst) has at most 64 characters.
MAX_DOMAIN_CHARS = 64
IED_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class PlannedDevice:
    inst: str  # logical device instance, e.g. FLEET, PACK_01
    domain: str  # MMS domain: IED name + inst, e.g. SOCGWFLEET
    spec: DeviceSpec
    node_id: str | None  # the pack it stands for (None: the fleet)
    texts: Mapping[str, str]  # values of the map's {placeholders}

    def text(self, template: str) -> str:
        return template.format_map(self.texts)


@dataclass(frozen=True)
class ModelPlan:
    ied_name: str
    iec_map: IecMap
    devices: tuple[PlannedDevice, ...]

    def device(self, inst: str) -> PlannedDevice:
        for device in self.devices:
            if device.inst == inst:
                return device
        raise KeyError(f"no logical device {inst} (known: {', '.join(d.inst for d in self.devices)})")


def device_name_for(node_id: str) -> str:
    """A pack's logical device name: its node id upper-case, with '-' (not allowed in MMS) as '_'."""
    return re.sub(r"[^A-Z0-9_]", "_", node_id.upper())


def plan_model(iec_map: IecMap, site: SiteConfig, ied_name: str, ied_mark: Mark) -> ModelPlan:
    """The logical devices for `site`; `ConfigError` when a name is not MMS-safe or used twice."""
    problems: list[Problem] = []
    if not IED_NAME.match(ied_name):
        problems.append(
            Problem(
                ied_mark,
                f"`ied_name` must be letters, digits and '_' starting with a letter (MMS), not {ied_name!r}",
            )
        )
    common = {"version": __version__, "map_version": iec_map.map_version, "site": site.name, "ied": ied_name}
    fleet_inst = iec_map.fleet.device or "FLEET"
    devices = [
        PlannedDevice(
            fleet_inst,
            ied_name + fleet_inst,
            iec_map.fleet,
            None,
            {**common, "node": "", "vendor": "", "model": ""},
        )
    ]
    owners: dict[str, str] = {fleet_inst: f"the fleet device of map {iec_map.path}"}
    for pack in site.served_packs:
        inst = device_name_for(pack.node_id)
        if inst in owners:
            problems.append(
                Problem(
                    pack.mark,
                    f"node `{pack.node_id}` would be IEC 61850 logical device {inst}, which is already "
                    f"{owners[inst]}: rename the node",
                )
            )
            continue
        owners[inst] = f"node `{pack.node_id}`"
        texts = {**common, "node": pack.node_id, "vendor": pack.vendor, "model": pack.model}
        devices.append(PlannedDevice(inst, ied_name + inst, iec_map.pack, pack.node_id, texts))
    for device in devices:
        if len(device.domain) > MAX_DOMAIN_CHARS:
            problems.append(
                Problem(
                    ied_mark,
                    f"MMS domain {device.domain} is longer than {MAX_DOMAIN_CHARS} characters: shorten "
                    "`ied_name` or the node id",
                )
            )
    if problems:
        raise ConfigError(problems)
    return ModelPlan(ied_name, iec_map, tuple(devices))
