"""The site command in force: the config's default, overridden by what SCADA masters command.

Pure: time is passed in. A commanded power request that its master stops refreshing reverts to the
default after `timeout_s` (the "API timeout" pattern of DER controllers), so a master that dies does not
leave the site discharging at its last request forever. Mode switches (balancing on/off, maintenance,
calibration) are latched: they stay until commanded otherwise.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from gateway.balancer import ChargeSource, SiteCommand


@dataclass(frozen=True)
class CommandUpdate:
    """One accepted command from a master; fields left None change nothing."""

    source: str  # who sent it, for the log: "dnp3 master 1 @ 127.0.0.1:53122", "iec61850 10.0.0.5", "cli"
    request_w: float | None = None
    charge_source: ChargeSource | None = None
    balancing_enabled: bool | None = None
    maintenance: tuple[str, bool] | None = None  # (node id, on/off)
    calibrate: tuple[str, bool] | None = None


class SiteCommandState:
    def __init__(self, default: SiteCommand, timeout_s: float) -> None:
        if timeout_s <= 0:
            raise ValueError(f"the command timeout must be > 0 s, got {timeout_s}")
        self.default = default
        self.timeout_s = timeout_s
        self._latched = default
        self._request_w: float | None = None
        self._request_at_s = 0.0
        self.last_source: str | None = None

    def apply(self, update: CommandUpdate, now_s: float) -> None:
        latched = self._latched
        if update.request_w is not None:
            self._request_w = update.request_w
            self._request_at_s = now_s
        if update.charge_source is not None:
            latched = dataclasses.replace(latched, charge_source=update.charge_source)
        if update.balancing_enabled is not None:
            latched = dataclasses.replace(latched, balancing_enabled=update.balancing_enabled)
        if update.maintenance is not None:
            node_id, on = update.maintenance
            changed = latched.maintenance | {node_id} if on else latched.maintenance - {node_id}
            latched = dataclasses.replace(latched, maintenance=changed)
        if update.calibrate is not None:
            node_id, on = update.calibrate
            changed = latched.calibrate | {node_id} if on else latched.calibrate - {node_id}
            latched = dataclasses.replace(latched, calibrate=changed)
        self._latched = latched
        self.last_source = update.source

    def commanded(self, now_s: float) -> bool:
        """Whether a master's power request is in force (not yet timed out)."""
        return self._request_w is not None and now_s - self._request_at_s <= self.timeout_s

    def current(self, now_s: float) -> SiteCommand:
        request_w = self.default.request_w
        if self._request_w is not None and self.commanded(now_s):
            request_w = self._request_w
        return dataclasses.replace(self._latched, request_w=request_w)
