"""The head's Sparkplug B host application: one MQTT connection per broker, on its own thread and loop.

On every broker of the list at once (Sparkplug 3.0 chapter 8, independent brokers) it connects with a
Will `spBv1.0/STATE/<host_id>` {"online": false, "timestamp": T} (retained, QoS 1), publishes
{"online": true, "timestamp": T} there retained, subscribes to the group's births, data and deaths,
and decodes each message on this thread; `deliver` hands the decoded message to the control loop
(`call_soon_threadsafe`), so the cycle never waits on a broker. A lost broker is retried after 0.5 s,
doubling to 10 s; on each (re)connection the head asks every worker for a Rebirth there (births are not
retained: a head that connects late learns the workers' state this way). `send` queues an NCMD on the
broker a worker was born through and returns at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable, Sequence

import aiomqtt

from gateway.hierarchy.settings import HeadSettings
from gateway.hierarchy.tracker import NAMESPACE, Received, parse_topic
from gateway.logbook import RateLimitedLog, emit_to
from gateway.northbound.mqtt.metrics import REBIRTH, DataType
from gateway.northbound.mqtt.payload import PayloadError, decode_message, encode

log = logging.getLogger("socgw.hierarchy")
FIRST_BACKOFF_S, MAX_BACKOFF_S = 0.5, 10.0
STOP_TIMEOUT_S = 5.0
MAX_MESSAGE_BYTES = 1 << 20  # a worker's NBIRTH of many metrics; anything larger is refused unread
SUBSCRIPTIONS = ("NBIRTH/+", "NDATA/+", "NDEATH/+", "DBIRTH/+/+", "DDATA/+/+", "DDEATH/+/+")

Deliver = Callable[[Received], None]


def state_payload(online: bool, timestamp_ms: int) -> bytes:
    return json.dumps({"online": online, "timestamp": timestamp_ms}).encode()


def command_payload(metrics: Sequence[tuple[str, DataType, float | bool]]) -> bytes:
    """An NCMD: the metrics only (commands carry no seq)."""
    return encode((), int(time.time() * 1000), None, extra=metrics)


class HostApplication:
    def __init__(self, settings: HeadSettings, deliver: Deliver) -> None:
        self._settings = settings
        self._deliver = deliver
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clients: dict[int, aiomqtt.Client] = {}
        self._stop: asyncio.Event | None = None
        self._ssl: ssl.SSLContext | None = None
        self._lines = RateLimitedLog(emit_to(log))
        self.sent = 0

    @property
    def state_topic(self) -> str:
        return f"{NAMESPACE}/STATE/{self._settings.host_id}"

    def command_topic(self, worker: str) -> str:
        return f"{NAMESPACE}/{self._settings.group_id}/NCMD/{worker}"

    # --- called from the control loop --------------------------------------------------------------

    def start(self) -> None:
        self._ssl = self._settings.mqtt.ssl_context()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="sparkplug-host", daemon=True)
        self._thread.start()
        ready.wait(STOP_TIMEOUT_S)

    def send(self, broker: int, worker: str, payload: bytes) -> None:
        """Queue an NCMD to `worker` on `broker`; dropped when that broker is not connected."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (stopping)
                loop.call_soon_threadsafe(self._publish, broker, self.command_topic(worker), payload)

    def stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_S)

    # --- on the host's loop --------------------------------------------------------------------------

    def _serve(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._stop = asyncio.Event()
        ready.set()
        try:
            loop.run_until_complete(self._run())
        finally:
            loop.close()

    async def _run(self) -> None:
        assert self._stop is not None
        tasks = [asyncio.create_task(self._broker(index)) for index in range(len(self._settings.brokers))]
        await self._stop.wait()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _publish(self, broker: int, topic: str, payload: bytes) -> None:
        client = self._clients.get(broker)
        if client is not None:
            self.sent += 1
            task = asyncio.get_running_loop().create_task(client.publish(topic, payload, qos=0))
            task.add_done_callback(_ignore_result)

    async def _broker(self, index: int) -> None:
        assert self._stop is not None
        broker = self._settings.brokers[index]
        backoff = FIRST_BACKOFF_S
        while not self._stop.is_set():
            timestamp = int(time.time() * 1000)
            will = aiomqtt.Will(self.state_topic, state_payload(False, timestamp), qos=1, retain=True)
            settings = self._settings.mqtt
            client = aiomqtt.Client(
                broker.host,
                broker.port,
                identifier=settings.client_id,
                will=will,
                keepalive=settings.keepalive_s,
                clean_session=True,
                protocol=aiomqtt.ProtocolVersion.V311,
                tls_context=self._ssl,
                timeout=10.0,
            )
            try:
                async with client:
                    await self._session(index, client, timestamp)
                    return  # stopping
            except aiomqtt.MqttError as error:
                self._lines.log(
                    f"host broker {index}", logging.WARNING,
                    f"head: broker {broker.host}:{broker.port}: {error}; again in {backoff:.1f} s",
                )  # fmt: skip
            finally:
                self._clients.pop(index, None)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), backoff)
            backoff = min(MAX_BACKOFF_S, backoff * 2)

    async def _session(self, index: int, client: aiomqtt.Client, timestamp: int) -> None:
        assert self._stop is not None
        group = self._settings.group_id
        for pattern in SUBSCRIPTIONS:
            await client.subscribe(f"{NAMESPACE}/{group}/{pattern}", qos=1)
        await client.publish(self.state_topic, state_payload(True, timestamp), qos=1, retain=True)
        self._clients[index] = client
        broker = self._settings.brokers[index]
        log.info("head %s online on broker %s:%d", self._settings.host_id, broker.host, broker.port)
        rebirth = command_payload(((REBIRTH, DataType.BOOLEAN, True),))
        for worker in self._settings.workers:
            await client.publish(self.command_topic(worker), rebirth, qos=0)
        reader = asyncio.create_task(self._read(index, client))
        stopping = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait((reader, stopping), return_when=asyncio.FIRST_COMPLETED)
            if self._stop.is_set():  # a clean stop: say so, as the Will would
                await client.publish(self.state_topic, state_payload(False, timestamp), qos=1, retain=True)
            elif reader.done():
                reader.result()  # the connection's error
        finally:
            reader.cancel()
            stopping.cancel()

    async def _read(self, index: int, client: aiomqtt.Client) -> None:
        group = self._settings.group_id
        async for message in client.messages:
            parsed = parse_topic(message.topic.value, group)
            data = message.payload if isinstance(message.payload, bytes) else b""
            if parsed is None:
                continue
            kind, worker, device = parsed
            try:
                decoded = decode_message(data, MAX_MESSAGE_BYTES)
            except PayloadError as error:
                self._lines.log(
                    f"host payload {worker}",
                    logging.WARNING,
                    f"head: {message.topic.value}: {error}; ignored",
                )
                continue
            self._deliver(Received(index, kind, worker, device, decoded.seq, decoded.metrics, decoded.stale))


def _ignore_result(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()  # a publish on a connection that just went: the next session rebirths
