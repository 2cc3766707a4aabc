"""The front door's server: takes each TCP connection on the public port, lets in only who may enter,
and splices an admitted session to the stack's private listener.

For each connection, in order: the allow-list and the rate per source (refused: closed at once, not a
byte sent); TLS when configured (the handshake, the client's certificate subject or fingerprint); the
protocol's first frame within `first_frame_s` (counted from the accept, the handshake included); a
session place (`max_sessions`). Connections waiting for their first frame are capped at `MAX_PENDING`:
when full, the oldest waiting one is closed, so a crowd of silent connections cannot keep out a master
that speaks. With `one_master` (DNP3: one link), a new session from the address of the live one replaces
it (the master reconnected after losing its connection); from any other address it is refused while
the live one lasts. A session whose peer sends nothing for `idle_s` is closed (the protocol's keep-alive
failed).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.northbound.adapter import Listener, NorthboundError
from gateway.northbound.frontdoor.audit import Audit, address_text
from gateway.northbound.frontdoor.policy import Gate
from gateway.northbound.frontdoor.private import PrivateLink
from gateway.northbound.frontdoor.secure import identity, listed, server_context
from gateway.northbound.frontdoor.sniff import SNIFFERS, Verdict
from gateway.northbound.frontdoor.splice import VALID, Half, until_end
from gateway.northbound.section import DoorPlan

MAX_PENDING = 64
KEEPALIVE = ((socket.TCP_KEEPIDLE, 30), (socket.TCP_KEEPINTVL, 10), (socket.TCP_KEEPCNT, 3))
CLOSE_WAIT_S = 2.0  # a replaced session's splice ends within this

Peer = tuple[str, int]

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Session:
    peer: Peer
    subject: str
    halves: list[Half] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def close(self) -> None:
        for half in self.halves:
            half.abort()


class _Refused(Exception):
    def __init__(self, reason: str, level: int = logging.INFO) -> None:
        super().__init__(reason)
        self.reason = reason
        self.level = level


def bind_public(plan: DoorPlan) -> socket.socket:
    """The public listening socket of `plan` (bound before the stack starts); NorthboundError says why not."""
    host, port = plan.listener.host, plan.listener.port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=128, reuse_port=False)
    except OSError as error:
        reason = {
            errno.EADDRINUSE: "the port is in use by another program",
            errno.EACCES: "ports below 1024 need root or CAP_NET_BIND_SERVICE",
            errno.EADDRNOTAVAIL: "this machine has no such address",
        }.get(error.errno or 0, error.strerror or str(error))
        raise NorthboundError(
            f"{plan.section}: cannot listen on {host}:{port}: {reason} "
            f"(`northbound.{plan.section}.port` and `host`)"
        ) from None


def build(plan: DoorPlan) -> FrontDoor:
    """The front door of `plan`, its public port bound (before the stack starts, so a port in use
    fails first) and TLS loaded; NorthboundError says what is wrong."""
    return FrontDoor(plan, bind_public(plan), PrivateLink(), Audit(plan.section))


async def accept_admitted(
    public: socket.socket, gate: Gate, audit: Audit, admitted: Callable[[socket.socket, Peer], None]
) -> None:
    """Accept on `public` (non-blocking) forever; a connection the gate refuses is closed before a byte
    is read or sent, an admitted one goes to `admitted`."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            connection, address = await loop.sock_accept(public)
        except OSError as error:  # out of file descriptors, say: the door stays open
            log.warning("front door %s: accept failed: %s", audit.section, error)
            await asyncio.sleep(0.1)
            continue
        peer: Peer = address[:2]
        refusal = gate.refusal(peer[0], time.monotonic())
        if refusal is None:
            admitted(connection, peer)
        else:
            connection.close()
            audit.record("refused", peer, reason=refusal)


class FrontDoor:
    """Serves `public` for the stack behind `private`; open/close on the child's loop."""

    def __init__(self, plan: DoorPlan, public: socket.socket, private: PrivateLink, audit: Audit) -> None:
        self.plan = plan
        self.audit = audit
        self._public = public
        self._private = private
        self._gate = Gate(plan.admission)
        self._sniff: Callable[[bytes], Verdict] = SNIFFERS[plan.section]
        self._one_master = plan.admission.max_sessions == 1
        try:
            self._tls = None if plan.tls is None else server_context(plan.tls)
        except (ssl.SSLError, OSError) as error:
            raise NorthboundError(f"{plan.section}: the TLS files do not load: {error}") from None
        self._pending: dict[asyncio.Task[None], Peer] = {}  # waiting for their first frame, oldest first
        self._handlers: set[asyncio.Task[None]] = set()
        self._sessions: list[_Session] = []
        self._accepting: asyncio.Task[None] | None = None
        self._reported: dict[str, int] = {}
        # Told the peer (and certificate subject) of each session before it reaches the stack, for an
        # adapter that names the peer in its logs and commands (the stack sees only the door).
        self.on_session: Callable[[str], None] | None = None
        self._behind: dict[str, str] = {}  # the stack's view of a spliced connection -> the client

    @property
    def private(self) -> Listener:
        """Where the stack must listen (plain TCP on loopback)."""
        return self._private.listener

    async def open(self) -> None:
        """Seal the stack's private listener, then take connections on the public socket."""
        self._private.seal()
        self._public.setblocking(False)
        self._accepting = asyncio.get_running_loop().create_task(
            accept_admitted(self._public, self._gate, self.audit, self._admitted)
        )
        plan, admission = self.plan, self.plan.admission
        log.info(
            "front door %s on %s:%d%s: allow %s; first frame within %g s, %s, %d per minute per source; "
            "the stack behind it on %s:%d, sealed",
            plan.section,
            plan.listener.host,
            plan.listener.port,
            " (mutual TLS: TLS 1.3, TLS 1.2 AEAD only, on the system's OpenSSL)" if plan.tls else "",
            ", ".join(str(network) for network in admission.allow),
            admission.first_frame_s,
            "one master" if self._one_master else f"at most {admission.max_sessions} sessions",
            admission.connects_per_min,
            self.private.host,
            self.private.port,
        )

    def new_counts(self) -> dict[str, int]:
        """What the audit counted since the last call (for the core's `socgw status`)."""
        counts = self.audit.counts()
        new = {key: count - self._reported.get(key, 0) for key, count in counts.items()}
        self._reported = counts
        return {key: count for key, count in new.items() if count > 0}

    async def close(self) -> None:
        tasks = [task for task in (self._accepting, *self._handlers) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._public.close()

    def _admitted(self, connection: socket.socket, peer: Peer) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(connection, peer))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)
        if len(self._pending) >= MAX_PENDING:  # the oldest silent connection makes room
            oldest = next(iter(self._pending))
            self.audit.record("refused", self._pending.pop(oldest), reason="evicted")
            oldest.cancel()
        self._pending[task] = peer

    async def _serve(self, connection: socket.socket, peer: Peer) -> None:
        _keepalive(connection)
        this = asyncio.current_task()
        client: Half | None = None
        subject = ""
        try:
            try:
                async with asyncio.timeout(self.plan.admission.first_frame_s):
                    client = await self._accept_client(connection)
                    subject = self._identity(client)
                    verdict = await client.first
            except TimeoutError:
                raise _Refused("first-frame-timeout") from None
            finally:
                if this is not None:
                    self._pending.pop(this, None)
            if verdict != VALID:
                raise _Refused(verdict)
            session = await self._place(peer, subject)
        except _Refused as refused:
            _abort(connection, client)
            self.audit.record("refused", peer, reason=refused.reason, subject=subject, level=refused.level)
            return
        except BaseException:  # cancelled (evicted, closing)
            _abort(connection, client)
            raise
        await self._splice(session, client)

    async def _accept_client(self, connection: socket.socket) -> Half:
        """The client's half on the accepted connection, after the TLS handshake when configured."""
        client = Half(self._sniff)
        try:
            await asyncio.get_running_loop().connect_accepted_socket(
                lambda: client,
                connection,
                ssl=self._tls,
                ssl_handshake_timeout=self.plan.admission.first_frame_s if self._tls else None,
            )
        except (ssl.SSLError, ConnectionError) as error:
            reason = getattr(error, "reason", None) or type(error).__name__
            raise _Refused(f"tls-failed ({reason})", logging.WARNING) from None
        return client

    def _identity(self, client: Half) -> str:
        """The client's certificate subject and TLS version ("" without TLS); _Refused when not listed."""
        if self.plan.tls is None:
            return ""
        transport = client.transport
        ssl_object: ssl.SSLObject | None = (
            None if transport is None else transport.get_extra_info("ssl_object")
        )
        certificate = None if ssl_object is None else ssl_object.getpeercert(binary_form=True)
        if ssl_object is None or certificate is None:
            raise _Refused("tls-failed (no client certificate)", logging.WARNING)
        subject, fingerprint = identity(certificate)
        if not listed(self.plan.tls.clients, subject, fingerprint):
            raise _Refused(f"client-not-listed ({subject}, {fingerprint})", logging.WARNING)
        return f"{subject}; {ssl_object.version()}"

    def client_behind(self, seen: str) -> str:
        """The client behind the connection a stack sees as `seen` (the door's `127.0.0.1:port`), for its
        command logs; `seen` itself for one the door did not open. Safe from a stack's thread."""
        return self._behind.get(seen, seen)

    async def _place(self, peer: Peer, subject: str) -> _Session:
        """A session place for `peer`: the DNP3 rule of one master, or the cap of sessions."""
        if self._one_master and self._sessions:
            live = self._sessions[0]
            if live.peer[0] != peer[0]:
                raise _Refused(f"busy (the master at {live.peer[0]} holds the session)")
            live.close()  # the same master again: its old connection is stale
            self.audit.record("replaced", live.peer, subject=live.subject)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_WAIT_S):
                    await live.done.wait()
        elif len(self._sessions) >= self.plan.admission.max_sessions:
            raise _Refused(f"busy ({len(self._sessions)} sessions, the most allowed)")
        session = _Session(peer, subject)
        self._sessions.append(session)
        return session

    async def _splice(self, session: _Session, client: Half) -> None:
        peer = session.peer
        session.halves.append(client)
        seen: str | None = None
        try:
            stack = Half()
            if self.on_session is not None:  # before the stack sees the connection open
                self.on_session(_peer_text(peer, session.subject))
            try:
                seen = await self._private.connect(stack)
            except OSError as error:
                self.audit.record("refused", peer, reason=f"stack-unreachable ({error})", level=logging.ERROR)
                return
            self._behind[seen] = _peer_text(peer, session.subject)
            session.halves.append(stack)
            client.join(stack)
            self.audit.record("admitted", peer, subject=session.subject)
            outcome = await until_end(client, stack, self.plan.admission.idle_s)
            self.audit.record("closed", peer, reason=outcome, subject=session.subject)
        finally:
            if seen is not None:
                del self._behind[seen]
            session.close()
            self._sessions.remove(session)
            session.done.set()


def _peer_text(peer: Peer, subject: str) -> str:
    return f"{address_text(peer)} ({subject.split(';', 1)[0]})" if subject else address_text(peer)


def _abort(connection: socket.socket, client: Half | None) -> None:
    if client is not None:
        client.abort()
    connection.close()


def _keepalive(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for option, value in KEEPALIVE:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)
