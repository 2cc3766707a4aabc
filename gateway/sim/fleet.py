"""A simulated fleet: one `PackServer` per pack of a `Scenario`, on one event loop.

Use it inside a running loop:

    async with SimulatedFleet(scenario) as fleet:
        host, port = fleet.endpoint("pack-01").address
        ...

or from synchronous code (tests, benchmarks) through `FleetThread`, which runs the fleet on a uvloop
event loop in a background thread and offers the same controls as blocking calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar

import uvloop

from gateway.sim.device import Identity, PackDevice
from gateway.sim.faults import Faults
from gateway.sim.physics import Operating, PackParams, PackState
from gateway.sim.rtu import RtuLine
from gateway.sim.scenario import PackSpec, Scenario
from gateway.sim.server import PackServer, monotonic_clock

# Wall-clock seconds between advances of every pack's physics, so packs nobody polls still drift
# (standby drain, cooling) at a bounded cost; requests advance their pack on their own.
TICK_S = 5.0

T = TypeVar("T")

_ENDPOINT_LINE = re.compile(
    r"(?P<pack_id>\S+) (?P<profile>\S+) fw (?P<firmware>\S+) "
    r"(?P<host>[^\s:]+):(?P<port>\d+) unit (?P<unit>\d+)"
)


@dataclass(frozen=True)
class Endpoint:
    """Where a pack listens."""

    pack_id: str
    profile_key: str
    firmware: str
    host: str
    port: int
    unit_id: int

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @classmethod
    def parse(cls, line: str) -> Endpoint:
        """Read back a `describe()` line (what `socgw simulate` prints); raise ValueError otherwise."""
        match = _ENDPOINT_LINE.fullmatch(line.strip())
        if match is None:
            raise ValueError(f"not a simulated-pack line: {line!r}")
        return cls(
            pack_id=match["pack_id"],
            profile_key=match["profile"],
            firmware=match["firmware"],
            host=match["host"],
            port=int(match["port"]),
            unit_id=int(match["unit"]),
        )

    def describe(self) -> str:
        where = f"{self.host}:{self.port} unit {self.unit_id}"
        return f"{self.pack_id} {self.profile_key} fw {self.firmware} {where}"


@dataclass(frozen=True)
class PackSnapshot:
    """A pack's physics at one simulated instant."""

    pack_id: str
    time_s: float  # simulated seconds since the fleet started
    params: PackParams
    state: PackState
    operating: Operating


class FleetError(Exception):
    """A fleet that cannot start, or a pack id it does not have (the message lists the known ids)."""


class SimulatedFleet:
    """Serves every pack of `scenario` over Modbus TCP. Control methods run on the fleet's loop."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.clock = monotonic_clock(scenario.speed)
        self._servers: dict[str, PackServer] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._lines: list[RtuLine] = []

    async def start(self) -> None:
        """Build every pack and open its listener; on failure close what was opened and raise."""
        if self._servers:
            raise FleetError("the fleet is already started")
        try:
            for spec in self.scenario.packs:
                server = self._build(spec)
                self._servers[spec.pack_id] = server
                await server.start()
        except OSError as error:
            await self.stop()
            raise FleetError(
                f"pack {spec.pack_id}: cannot listen on {spec.host}:{spec.port}: {error}"
            ) from error
        except BaseException:
            await self.stop()
            raise
        self._ticker = asyncio.get_running_loop().create_task(self._tick())

    def _build(self, spec: PackSpec) -> PackServer:
        identity = Identity(
            pack_id=spec.pack_id,
            serial=spec.serial,
            model_name=spec.profile.model.upper(),
            firmware=spec.firmware,
        )
        device = PackDevice(identity, spec.profile, spec.params, spec.initial, sim_time_s=self.clock())
        return PackServer(
            device,
            spec.host,
            spec.port,
            unit_id=spec.unit_id,
            clock=self.clock,
            faults=spec.faults,
            seed=spec.seed,
        )

    async def stop(self) -> None:
        """Close every listener and connection. Safe to call twice."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        lines, self._lines = self._lines, []
        for line in lines:
            await line.stop()
        servers, self._servers = list(self._servers.values()), {}
        await asyncio.gather(*(s.stop() for s in servers))

    async def open_line(
        self, *, host: str = "", port: int = 0, baud: int | None = None, bits_per_char: int = 10
    ) -> RtuLine:
        """Put every pack on one Modbus RTU line as units 1..N (in scenario order): served as RTU over TCP
        on host:port, or (no host) on a pseudo-terminal whose device is the line's `device`."""
        servers = list(self._servers.values())
        for unit_id, server in enumerate(servers, start=1):
            server.unit_id = unit_id
        line = RtuLine(servers, baud=baud, bits_per_char=bits_per_char)
        if host:
            await line.serve_tcp(host, port)
        else:
            await line.serve_pty()
        self._lines.append(line)
        return line

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.stop()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            now = self.clock()
            for server in self._servers.values():
                server.device.advance_to(now)

    # ---- inspection and control ----------------------------------------------------------------------

    def _server(self, pack_id: str) -> PackServer:
        server = self._servers.get(pack_id)
        if server is None:
            known = ", ".join(self._servers) or "none (is the fleet started?)"
            raise FleetError(f"no simulated pack {pack_id!r} (packs: {known})")
        return server

    @property
    def endpoints(self) -> list[Endpoint]:
        return [self.endpoint(pack_id) for pack_id in self._servers]

    def endpoint(self, pack_id: str) -> Endpoint:
        server = self._server(pack_id)
        device = server.device
        return Endpoint(
            pack_id=pack_id,
            profile_key=device.profile.key,
            firmware=str(device.identity.firmware),
            host=server.host,
            port=server.port,
            unit_id=server.unit_id,
        )

    def snapshot(self, pack_id: str) -> PackSnapshot:
        """The pack's physics now (advanced to the current simulated time)."""
        device = self._server(pack_id).device
        device.advance_to(self.clock(), exact=True)
        return PackSnapshot(pack_id, device.time_s, device.params, device.state, device.operating)

    def update_state(self, pack_id: str, **changes: Any) -> PackState:
        """Change fields of the pack's `PackState` (e.g. soc_pct=12, fault_flags=frozenset({"contactor"}))."""
        device = self._server(pack_id).device
        now = self.clock()
        device.advance_to(now, exact=True)
        state = dataclasses.replace(device.state, **changes)
        device.replace_state(state, now)
        return state

    async def set_faults(self, pack_id: str, faults: Faults | None = None, **changes: Any) -> Faults:
        """Replace the pack's fault knobs (`faults`, or the current ones with `changes`); return them.

        Takes effect from the next request; a listener opened or closed for `refuse_connections` has
        changed when this returns.
        """
        server = self._server(pack_id)
        new = (faults if faults is not None else server.faults).with_changes(**changes)
        server.faults = new
        await server.apply_listener_faults()
        return new

    async def clear_faults(self, pack_id: str | None = None) -> None:
        """Turn every fault knob off, on one pack or (None) on all."""
        for target in [pack_id] if pack_id is not None else list(self._servers):
            await self.set_faults(target, Faults())

    def request_count(self, pack_id: str) -> int:
        """Requests the pack has received (answered or not) since the fleet started."""
        return self._server(pack_id).requests


class FleetThread:
    """Runs a `SimulatedFleet` on a uvloop event loop in a daemon thread; every method is a blocking call.

    with FleetThread(scenario) as fleet:
        port = fleet.endpoint("pack-01").port
        fleet.set_faults("pack-01", delay_ms=200)
    """

    def __init__(self, scenario: Scenario, *, start_timeout_s: float = 30.0) -> None:
        self.fleet = SimulatedFleet(scenario)
        self._start_timeout_s = start_timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    def start(self) -> None:
        """Start the thread and the fleet; raise what `SimulatedFleet.start` raised."""
        if self._thread is not None:
            raise FleetError("the fleet thread is already started")
        self._thread = threading.Thread(target=self._run, name="simulated-fleet", daemon=True)
        self._thread.start()
        if not self._ready.wait(self._start_timeout_s):
            raise FleetError(f"the simulated fleet did not start within {self._start_timeout_s} s")
        if self._error is not None:
            self._thread.join(self._start_timeout_s)
            self._thread = None
            raise self._error

    def _run(self) -> None:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self.fleet.start()
        except BaseException as error:
            self._error = error
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.fleet.stop()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the fleet (close every socket) and join the thread. Safe to call twice."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        thread.join(timeout_s)
        if thread.is_alive():
            raise FleetError(f"the simulated fleet thread did not stop within {timeout_s} s")

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def call(self, function: Callable[[], T], timeout_s: float = 10.0) -> T:
        """Run `function()` on the fleet's loop and return its result."""
        return self.run(_as_coroutine(function), timeout_s)

    def run(self, coroutine: Coroutine[Any, Any, T], timeout_s: float = 10.0) -> T:
        """Run `coroutine` on the fleet's loop and return its result."""
        if self._loop is None or self._thread is None:
            coroutine.close()
            raise FleetError("the simulated fleet is not running (call start() first)")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout_s)

    # Blocking counterparts of SimulatedFleet's controls.

    @property
    def endpoints(self) -> list[Endpoint]:
        return self.call(lambda: self.fleet.endpoints)

    def endpoint(self, pack_id: str) -> Endpoint:
        return self.call(lambda: self.fleet.endpoint(pack_id))

    def snapshot(self, pack_id: str) -> PackSnapshot:
        return self.call(lambda: self.fleet.snapshot(pack_id))

    def update_state(self, pack_id: str, **changes: Any) -> PackState:
        return self.call(lambda: self.fleet.update_state(pack_id, **changes))

    def set_faults(self, pack_id: str, faults: Faults | None = None, **changes: Any) -> Faults:
        return self.run(self.fleet.set_faults(pack_id, faults, **changes))

    def clear_faults(self, pack_id: str | None = None) -> None:
        self.run(self.fleet.clear_faults(pack_id))

    def request_count(self, pack_id: str) -> int:
        return self.call(lambda: self.fleet.request_count(pack_id))


async def _as_coroutine(function: Callable[[], T]) -> T:
    return function()
