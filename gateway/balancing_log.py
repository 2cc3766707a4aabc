"""The balancing decisions log: one JSON line per change of decision, in a size-rotated file.

Integrators and vendors read it after the fact ("why did pack 3 stop discharging at 14:02?"), so each
line is self-contained: time, request, served and unserved power, and every node's setpoint and mode.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
from pathlib import Path
from typing import Any


class BalancingLog:
    """Writes a decision only when it differs from the previous one written."""

    def __init__(self, path: Path, max_bytes: int = 10_000_000, backup_count: int = 5) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.handlers.RotatingFileHandler(
                path, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8"
            )
        except OSError as error:
            raise OSError(
                f"cannot open the balancing log {path}: {error.strerror}; set `logging.balancing_log` in the "
                "site config to a writable path, or to null to disable it"
            ) from error
        handler.setFormatter(logging.Formatter("%(message)s"))
        self._logger = logging.getLogger(f"socgw.balancing.{path}")
        self._logger.propagate = False
        self._logger.setLevel(logging.INFO)
        self._logger.addHandler(handler)
        self._handler = handler
        self._last_decision: Any = None
        self.path = path

    def record(self, timestamp: str, decision: dict[str, Any], context: dict[str, Any]) -> bool:
        """Write `decision` (plus `context`, e.g. fleet SOC) if it changed; True when written."""
        if decision == self._last_decision:
            return False
        self._last_decision = decision
        self._logger.info(json.dumps({"time": timestamp, **decision, **context}, separators=(",", ":")))
        return True

    def close(self) -> None:
        self._logger.removeHandler(self._handler)
        self._handler.close()
