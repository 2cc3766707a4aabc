"""The MQTT adapter: the edge node's connection to a broker, on its own thread and asyncio loop.

`publish` (the child's loop) only hands the newest snapshot over, `publish_nodes` the states of packs
that answered before it (kept newest per pack until sent; a snapshot replaces them, it carries them
all); this thread connects with the NDEATH
as its Will, subscribes to the command topics before the births, publishes what `EdgeNode` makes of
each snapshot, and answers the host's commands off its loop (`submit` may wait for the core). A lost or
refused connection moves to the next broker after a backoff (0.5 s doubling to 10 s); every new
connection has the next bdSeq and rebirths with the current state. With a primary host configured, the
births wait for its STATE online, and its STATE offline ends the session (NDEATH, disconnect, again).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import ssl
import threading
from collections.abc import Sequence

import aiomqtt

from gateway.fleet import NodeState
from gateway.logbook import RateLimitedLog, emit_to
from gateway.northbound.adapter import NodeUpdate, NorthboundError
from gateway.northbound.mqtt.edge import EdgeNode, Topics, death_payload
from gateway.northbound.mqtt.settings import Broker, MqttSettings
from gateway.snapshot import CycleSnapshot

log = logging.getLogger("socgw.mqtt")
FIRST_BACKOFF_S, MAX_BACKOFF_S = 0.5, 10.0
STOP_TIMEOUT_S = 5.0
# A QoS 0 publish is done once written to the socket; aiomqtt waits for that until its timeout even when
# the connection is gone (a broker crash mid-publish), so a short one bounds the move to the next broker.
PUBLISH_TIMEOUT_S = 1.0
EXIT_ADAPTER_FAILED = 70  # EX_SOFTWARE: the supervisor logs the exit and restarts the child


class _SessionOver(Exception):
    """The primary host went offline: NDEATH, disconnect and start over (specification 5.4)."""


class MqttAdapter:
    name = "mqtt"

    def __init__(self, settings: MqttSettings, edge: EdgeNode, rated_power_w: float | None) -> None:
        self._settings = settings
        self._edge = edge
        self._rated_power_w = rated_power_w
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._latest: CycleSnapshot | None = None
        self._unpublished = False  # `_latest` not published yet
        self._nodes: dict[str, NodeState] = {}  # offered after `_latest`, not published yet
        self._nodes_stamp = 0  # their time, ms since the epoch
        self._fresh: asyncio.Event | None = None
        self._stopping = False
        self._ssl: ssl.SSLContext | None = None
        self._lines = RateLimitedLog(emit_to(log))
        self.connections = 0  # sessions that reached the births (for tests and the status)

    # --- called by the child ---------------------------------------------------------------------

    def start(self) -> None:
        try:
            self._ssl = self._settings.ssl_context()
        except (OSError, ssl.SSLError) as error:
            raise NorthboundError(f"northbound.mqtt tls: {error}") from None
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="mqtt", daemon=True)
        self._thread.start()
        ready.wait(STOP_TIMEOUT_S)

    def publish(self, snapshot: CycleSnapshot) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (stopping)
                loop.call_soon_threadsafe(self._offer, snapshot)

    def publish_nodes(self, update: NodeUpdate) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (stopping)
                loop.call_soon_threadsafe(self._offer_nodes, update)

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._request_stop)
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_S)

    # --- on the adapter's loop --------------------------------------------------------------------

    def _offer(self, snapshot: CycleSnapshot) -> None:
        self._latest, self._unpublished = snapshot, True
        self._nodes = {}
        assert self._fresh is not None
        self._fresh.set()

    def _offer_nodes(self, update: NodeUpdate) -> None:
        for node in update.nodes:
            self._nodes[node.node_id] = node
        self._nodes_stamp = int(update.wall_time.timestamp() * 1000)
        assert self._fresh is not None
        self._fresh.set()

    def _request_stop(self) -> None:
        self._stopping = True
        assert self._fresh is not None
        self._fresh.set()

    def _serve(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._fresh = asyncio.Event()
        ready.set()
        try:
            loop.run_until_complete(self._run())
        except Exception:  # a bug: said with its trace, then the child ends so its supervisor restarts it
            log.exception("MQTT adapter failed; ending the adapter process")
            os._exit(EXIT_ADAPTER_FAILED)
        finally:
            loop.close()

    async def _run(self) -> None:
        brokers: Sequence[Broker] = self._settings.brokers
        index, bd_seq, backoff = 0, 0, FIRST_BACKOFF_S
        while not self._stopping:
            broker = brokers[index]
            try:
                async with self._client(broker, bd_seq) as client:
                    backoff = FIRST_BACKOFF_S
                    log.info(
                        "connected to the MQTT broker %s:%d (bdSeq %d)", broker.host, broker.port, bd_seq
                    )
                    await self._session(client, bd_seq)
            except aiomqtt.MqttError as error:
                self._lines.log(
                    f"mqtt broker {broker.host}:{broker.port}", logging.WARNING,
                    f"MQTT broker {broker.host}:{broker.port}: {error}; trying "
                    f"{brokers[(index + 1) % len(brokers)].host} in {backoff:.1f} s",
                )  # fmt: skip
                index = (index + 1) % len(brokers)
                await self._pause(backoff)
                backoff = min(MAX_BACKOFF_S, backoff * 2)
            except _SessionOver:
                # Sparkplug 3.0 chapter 8: the host gone from this broker, look for it on the next one
                index = (index + 1) % len(brokers)
                log.warning("the primary host %s went offline: NDEATH sent, trying %s",
                            self._settings.primary_host_id, brokers[index].host)  # fmt: skip
            bd_seq = (bd_seq + 1) % 256

    def _client(self, broker: Broker, bd_seq: int) -> aiomqtt.Client:
        settings = self._settings
        will = aiomqtt.Will(self._edge.topics.node("NDEATH"), death_payload(bd_seq), qos=1, retain=False)
        return aiomqtt.Client(
            broker.host, broker.port, identifier=settings.client_id, username=settings.username,
            password=settings.password, will=will, keepalive=settings.keepalive_s, clean_session=True,
            protocol=aiomqtt.ProtocolVersion.V311, tls_context=self._ssl, timeout=10.0,
        )  # fmt: skip

    async def _pause(self, seconds: float) -> None:
        assert self._fresh is not None
        deadline = asyncio.get_running_loop().time() + seconds
        while not self._stopping:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            self._fresh.clear()
            try:
                await asyncio.wait_for(self._fresh.wait(), remaining)
            except TimeoutError:
                return

    async def _session(self, client: aiomqtt.Client, bd_seq: int) -> None:
        topics: Topics = self._edge.topics
        await client.subscribe(topics.node("NCMD"), qos=1)
        await client.subscribe(topics.node("DCMD") + "/+", qos=1)
        host = self._settings.primary_host_id
        if host is not None:
            await client.subscribe(Topics.state(host), qos=1)
        session = _Session(host is None)
        reader = asyncio.create_task(self._read(client, session))
        assert self._fresh is not None
        try:
            while True:
                await self._fresh.wait()
                self._fresh.clear()
                if session.error is not None:
                    raise session.error
                if self._stopping or session.over:
                    await client.publish(topics.node("NDEATH"), death_payload(bd_seq), qos=1)
                    if session.over:
                        raise _SessionOver
                    return
                snapshot = self._latest
                if snapshot is None or not session.host_online:
                    continue
                if not session.born or session.rebirth:
                    session.born, session.rebirth = True, False
                    messages = self._edge.births(snapshot, bd_seq)
                    self.connections += 1
                elif self._unpublished:
                    messages = self._edge.update(snapshot)
                else:
                    messages = []  # woken by a command or by node states alone
                self._unpublished = False
                if self._nodes:
                    nodes, self._nodes = list(self._nodes.values()), {}
                    messages += self._edge.update_nodes(nodes, self._nodes_stamp)
                for topic, payload in messages:
                    await client.publish(topic, payload, qos=0, timeout=PUBLISH_TIMEOUT_S)
        finally:
            reader.cancel()

    async def _read(self, client: aiomqtt.Client, session: _Session) -> None:
        assert self._fresh is not None
        try:
            async for message in client.messages:
                topic = message.topic.value
                payload = message.payload if isinstance(message.payload, bytes) else b""
                if topic.startswith("spBv1.0/STATE/"):
                    session.state(payload)
                else:
                    latest = self._latest
                    rated = None if latest is None else latest.rated_power_w(self._rated_power_w)
                    if await asyncio.to_thread(self._edge.command, topic, payload, rated):
                        session.rebirth = True
                self._fresh.set()
        except aiomqtt.MqttError as error:
            session.error = error
            self._fresh.set()


class _Session:
    """What one connection knows: born yet, Rebirth asked, the primary host's STATE."""

    def __init__(self, host_online: bool) -> None:
        self.host_online = host_online
        self.born = False
        self.rebirth = False
        self.over = False
        self.error: aiomqtt.MqttError | None = None
        self._host_timestamp = -1

    def state(self, payload: bytes) -> None:
        try:
            state = json.loads(payload)
            online, timestamp = state["online"], state["timestamp"]
        except (ValueError, TypeError, KeyError):
            return  # not a Sparkplug 3.0 STATE: ignored
        if not isinstance(online, bool) or not isinstance(timestamp, int) or timestamp < self._host_timestamp:
            return
        self._host_timestamp = timestamp
        if online:
            self.host_online = True
        elif self.born:
            self.over = True
        else:
            self.host_online = False
