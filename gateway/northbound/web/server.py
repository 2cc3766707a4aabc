"""The web adapter: an aiohttp server on its own thread and event loop serving the live view (`/`,
`/static/...`, server-sent events on `/events`, the current state on `/api/state`) and `/metrics`.

`publish` runs on the control loop and only appends the snapshot to a bounded queue; the server's
thread takes the queued snapshots twice a second, updates the history and the metrics, and pushes the
new state to every browser. A slow browser or scrape therefore never delays a cycle.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import socket
import ssl
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from importlib import resources
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.northbound.adapter import NodeUpdate, NorthboundError
from gateway.northbound.frontdoor.audit import Audit
from gateway.northbound.frontdoor.door import accept_admitted
from gateway.northbound.frontdoor.policy import Gate
from gateway.northbound.section import Admission
from gateway.northbound.web.document import state_document
from gateway.northbound.web.history import History
from gateway.northbound.web.login import verify_password
from gateway.northbound.web.metrics import Metrics
from gateway.northbound.web.settings import WebSettings
from gateway.snapshot import CycleSnapshot

log = logging.getLogger(__name__)

PUSH_PERIOD_S = 0.5
INBOX_SNAPSHOTS = 1000  # 100 s of 100 ms cycles: beyond that the oldest are dropped (history gaps only)
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
HANDSHAKE_TIMEOUT_S = 10.0  # a TLS client that has not finished its handshake by then is closed
STATIC = resources.files("gateway.northbound.web") / "static"
STATIC_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class WebAdapter:
    name = "web"

    def __init__(self, settings: WebSettings, site: str, profiles: Mapping[str, str], cycle_s: float) -> None:
        self.settings = settings
        self._site = site
        self._profiles = dict(profiles)
        self._inbox: deque[CycleSnapshot] = deque(maxlen=INBOX_SNAPSHOTS)
        self._history = History(cycle_s)
        self._latest: CycleSnapshot | None = None
        self._lock = threading.Lock()  # the scrape (collector) reads what the push task writes
        self.audit = Audit("web")
        self.metrics = Metrics(self._current, self._profiles, self.audit.counts)
        self._state: dict[str, Any] | None = None
        self._version = 0
        self._changed: asyncio.Condition | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._verified: set[str] = set()  # digests of Authorization headers already checked
        # Who may connect is checked at the accept, before TLS or HTTP: the view terminates its own TLS
        # (Python's ssl already) and needs no splice; refused peers get no byte (docs/web.md).
        self._gate = Gate(Admission(allow=settings.allow))
        self._connections: set[asyncio.Task[None]] = set()

    # --- NorthboundAdapter ---------------------------------------------------------------------------

    def start(self) -> None:
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._serve, args=(ready, failure), name="socgw-web", daemon=True
        )
        self._thread.start()
        if not ready.wait(START_TIMEOUT_S):
            raise NorthboundError(
                f"web view: {self.settings.address} did not start within {START_TIMEOUT_S:.0f} s"
            )
        if failure:
            self._thread.join()
            error = failure[0]
            reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            raise NorthboundError(
                f"web view: cannot listen on {self.settings.host}:{self.settings.port}: {reason} "
                "(another program uses the port? change northbound.web `port`)"
            )
        log.info("web view on %s", self.settings.address)

    def publish(self, snapshot: CycleSnapshot) -> None:
        self._inbox.append(snapshot)  # deque.append is atomic: safe against the server thread's popleft

    def publish_nodes(self, update: NodeUpdate) -> None:
        """Nothing: the page and /metrics refresh twice a second, from the snapshots."""

    def stop(self) -> None:
        loop, stopping, thread = self._loop, self._stopping, self._thread
        if loop is not None and stopping is not None and thread is not None and thread.is_alive():
            loop.call_soon_threadsafe(stopping.set)
            thread.join(STOP_TIMEOUT_S)
        self._thread = None

    # --- the server's thread -------------------------------------------------------------------------

    def _serve(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main(ready, failure))
        finally:
            loop.close()

    async def _main(self, ready: threading.Event, failure: list[BaseException]) -> None:
        self._stopping = asyncio.Event()
        self._changed = asyncio.Condition()
        runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        host = self.settings.host
        try:
            public = socket.create_server(
                (host, self.settings.port),
                family=socket.AF_INET6 if ":" in host else socket.AF_INET,
                backlog=128,
            )
        except OSError as error:
            failure.append(error)
            ready.set()
            await runner.cleanup()
            return
        public.setblocking(False)
        context = self.settings.ssl_context()
        ready.set()
        pusher = asyncio.create_task(self._push())
        server = runner.server
        assert server is not None

        def admitted(connection: socket.socket, peer: tuple[str, int]) -> None:
            task = asyncio.get_running_loop().create_task(self._hand_over(server, context, connection, peer))
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)

        accepting = asyncio.create_task(accept_admitted(public, self._gate, self.audit, admitted))
        await self._stopping.wait()
        pusher.cancel()
        accepting.cancel()
        public.close()
        async with self._changed:
            self._changed.notify_all()  # the event streams see `_stopping` and end
        await runner.cleanup()

    async def _hand_over(
        self,
        server: web.Server,
        context: ssl.SSLContext | None,
        connection: socket.socket,
        peer: tuple[str, int],
    ) -> None:
        """The admitted connection to aiohttp's server (after the TLS handshake, with `tls`)."""
        try:
            await asyncio.get_running_loop().connect_accepted_socket(
                server,
                connection,
                ssl=context,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S if context else None,
            )
        except (ssl.SSLError, ConnectionError, OSError) as error:
            connection.close()
            reason = getattr(error, "reason", None) or type(error).__name__
            self.audit.record("refused", peer, reason=f"tls-failed ({reason})", level=logging.WARNING)
            return
        self.audit.record("admitted", peer)

    async def _push(self) -> None:
        assert self._changed is not None
        while True:
            taken = []
            while self._inbox:
                taken.append(self._inbox.popleft())
            if taken:
                self._take(taken)
                async with self._changed:
                    self._version += 1
                    self._changed.notify_all()
            await asyncio.sleep(PUSH_PERIOD_S)

    def _take(self, snapshots: list[CycleSnapshot]) -> None:
        with self._lock:
            for snapshot in snapshots:
                for interval in self._history.observe(snapshot):
                    self.metrics.cycle_interval.observe(interval)
                work_ms = sum(snapshot.accounts.steps_ms.values())
                self.metrics.cycle_work.observe(work_ms / 1000.0)
            self._latest = snapshots[-1]
            self._state = state_document(self._latest, self._history, self._profiles, self._site)

    def _current(self) -> tuple[CycleSnapshot | None, History]:
        with self._lock:
            return self._latest, self._history

    # --- HTTP ----------------------------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._login] if self.settings.login is not None else [])
        app.router.add_get("/", self._index)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/events", self._events)
        app.router.add_get("/api/state", self._api_state)
        app.router.add_get("/metrics", self._metrics)
        return app

    @web.middleware
    async def _login(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        login = self.settings.login
        assert login is not None
        header = request.headers.get("Authorization", "")
        digest = hashlib.sha256(header.encode("utf-8", "replace")).hexdigest()
        if digest not in self._verified:
            if not await self._check(header, login.user, login.password_hash):
                raise web.HTTPUnauthorized(
                    headers={"WWW-Authenticate": 'Basic realm="socgw", charset="UTF-8"'}
                )
            self._verified.add(digest)
        return await handler(request)

    async def _check(self, header: str, user: str, password_hash: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            given_user, _, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        # scrypt takes tens of milliseconds: off this loop, so that other browsers keep their updates.
        matches = await asyncio.to_thread(verify_password, password, password_hash)
        return matches and given_user == user

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return self._file("index.html")

    async def _static(self, request: web.Request) -> web.StreamResponse:
        return self._file(request.match_info["name"])

    def _file(self, name: str) -> web.Response:
        suffix = name[name.rfind(".") :] if "." in name else ""
        entry = STATIC / name
        if "/" in name or suffix not in STATIC_TYPES or not entry.is_file():
            raise web.HTTPNotFound()
        return web.Response(
            body=entry.read_bytes(),
            content_type=STATIC_TYPES[suffix],
            charset="utf-8",
            headers={"Cache-Control": "no-cache"},
        )

    async def _api_state(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            state = self._state
        if state is None:
            raise web.HTTPServiceUnavailable(text="no cycle yet")
        return web.json_response(state)

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _events(self, request: web.Request) -> web.StreamResponse:
        assert self._changed is not None and self._stopping is not None
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        with self._lock:
            node_ids = [node.node_id for node in self._latest.fleet.nodes] if self._latest else []
            history = self._history.series(node_ids)
        await response.write(_event("history", history))
        seen = -1
        stopping = self._stopping
        while not stopping.is_set():
            async with self._changed:
                await self._changed.wait_for(partial(self._news, seen, stopping))
            seen = self._version
            with self._lock:
                state = self._state
            if state is not None and not stopping.is_set():
                try:
                    await response.write(_event("state", state))
                except ConnectionError:
                    break
        return response

    def _news(self, seen: int, stopping: asyncio.Event) -> bool:
        return self._version != seen or stopping.is_set()


def _event(name: str, data: object) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
