"""The site command in force: the config's default, overridden by what SCADA masters command.

Pure: time is passed in. A commanded power request that its master stops refreshing reverts to the
default after `timeout_s` (the "API timeout" pattern of DER controllers), so a master that dies does not
leave the site discharging at its last request forever. Mode switches (balancing on/off, maintenance,
calibration, the AN2018 charge/discharge mode) and the reserve and ceiling a master sets are latched:
they stay until commanded otherwise (or the gateway restarts, when the config's values apply again).

Charge/discharge mode off (AN2018 "enable charge/discharge mode", DNP3 BO18) holds the site at 0 W
whatever is requested; a request written meanwhile is held, and takes effect (its timeout starting
then) when the mode is switched on again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from gateway.balancer import BalancerParams, ChargeSource, SiteCommand


@dataclass(frozen=True)
class CommandUpdate:
    """One accepted command from a master; fields left None change nothing."""

    source: str  # who sent it, for the log: "dnp3 master 1 @ 127.0.0.1:53122", "iec61850 10.0.0.5", "cli"
    request_w: float | None = None
    charge_source: ChargeSource | None = None
    balancing_enabled: bool | None = None
    maintenance: tuple[str, bool] | None = None  # (node id, on/off)
    calibrate: tuple[str, bool] | None = None
    charge_discharge_enabled: bool | None = None  # AN2018 charge/discharge mode
    reserve_pct: float | None = None  # the balancer's backup reserve
    ceiling_pct: float | None = None  # the balancer's SOC ceiling for charging


class SiteCommandState:
    def __init__(self, default: SiteCommand, timeout_s: float, params: BalancerParams | None = None) -> None:
        if timeout_s <= 0:
            raise ValueError(f"the command timeout must be > 0 s, got {timeout_s}")
        self.default = default
        self.base_params = params or BalancerParams()
        self.params = self.base_params  # with the reserve and ceiling masters set
        self.timeout_s = timeout_s
        self._latched = default
        self.charge_discharge_enabled = True
        self._request_w: float | None = None
        self._request_at_s = 0.0
        self._limits: dict[str, float] = {}  # reserve_pct / ceiling_pct set by a master
        self.last_source: str | None = None

    def check(self, update: CommandUpdate) -> str | None:
        """Why `apply` would refuse `update` now (a reserve or ceiling that does not fit the values in
        force), or None; changes nothing."""
        try:
            self._limits_with(update)
        except ValueError as error:
            return str(error)
        return None

    def _limits_with(self, update: CommandUpdate) -> tuple[dict[str, float], BalancerParams]:
        limits = dict(self._limits)
        if update.reserve_pct is not None:
            limits["reserve_pct"] = update.reserve_pct
        if update.ceiling_pct is not None:
            limits["ceiling_pct"] = update.ceiling_pct
        if not limits:
            return limits, self.base_params
        try:
            return limits, dataclasses.replace(self.base_params, **limits)
        except ValueError:
            base = self.base_params
            reserve = limits.get("reserve_pct", base.reserve_pct)
            ceiling = limits.get("ceiling_pct", base.ceiling_pct)
            raise ValueError(
                f"reserve_pct {reserve:g} % + reserve_hysteresis_pct {base.reserve_hysteresis_pct:g} % must "
                f"stay below ceiling_pct {ceiling:g} %, and the ceiling at most 100 %"
            ) from None

    def apply(self, update: CommandUpdate, now_s: float) -> None:
        """Take a validated update. Raises ValueError, and changes nothing, when a reserve or ceiling does
        not fit the balancer's rules together with the values in force (reserve + hysteresis < ceiling)."""
        limits, params = self._limits_with(update)
        latched = self._latched
        if update.request_w is not None:
            self._request_w = update.request_w
            self._request_at_s = now_s
        if update.charge_discharge_enabled is not None:
            if update.charge_discharge_enabled and not self.charge_discharge_enabled:
                self._request_at_s = now_s  # the held request takes effect now
            self.charge_discharge_enabled = update.charge_discharge_enabled
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
        self._limits = limits
        self.params = params
        self.last_source = update.source

    def commanded(self, now_s: float) -> bool:
        """Whether a master's power request is in force (not yet timed out), or its mode switch
        holds the site at 0 W."""
        if not self.charge_discharge_enabled:
            return True
        return self._request_w is not None and now_s - self._request_at_s <= self.timeout_s

    def current(self, now_s: float) -> SiteCommand:
        request_w = self.default.request_w
        if not self.charge_discharge_enabled:
            request_w = 0.0
        elif self._request_w is not None and self.commanded(now_s):
            request_w = self._request_w
        return dataclasses.replace(self._latched, request_w=request_w)
