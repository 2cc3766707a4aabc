"""One structured line per connection admitted or refused and per TLS failure, and the counters shown
by `socgw status`. Lines are key=value, e.g.

    front door dnp3: outcome=refused reason=not-allowed peer=10.9.9.9:51012

Refusals go through the rate-limited log per reason and source (a flood writes a few lines a minute and
a count of the rest); the counters count every one."""

from __future__ import annotations

import logging
import threading
from collections import Counter

from gateway.logbook import RateLimitedLog, emit_to

log = logging.getLogger("gateway.northbound.frontdoor.audit")


class Audit:
    def __init__(self, section: str) -> None:
        self.section = section
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._lines = RateLimitedLog(emit_to(log))

    def record(
        self,
        outcome: str,
        peer: tuple[str, int],
        *,
        reason: str = "",
        subject: str = "",
        level: int = logging.INFO,
    ) -> None:
        """Count `outcome` (with its reason) and write its line."""
        # the counter's name: the reason's first word, without its details
        name = f"{outcome}-{reason.split(' ', maxsplit=1)[0]}" if reason else outcome
        with self._lock:
            self._counts[name] += 1
        fields = [f"outcome={outcome}"]
        if reason:
            fields.append(f"reason={reason}")
        fields.append(f"peer={address_text(peer)}")
        if subject:
            fields.append(f'subject="{subject}"')
        key = f"front door {self.section} {name} {peer[0]}"
        self._lines.log(key, level, f"front door {self.section}: {' '.join(fields)}")

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


def address_text(peer: tuple[str, int]) -> str:
    """host:port, with IPv6 hosts in brackets."""
    host, port = peer
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
