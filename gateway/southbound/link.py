"""One Modbus connection (TCP, RTU over TCP, or RTU on a serial port), with every failure classified.

Modbus TCP runs on socgw's own lean client (`tcp_client.py`); RTU over TCP on pymodbus's
`AsyncModbusTcpClient` (3.16, with its RTU framer) and RTU on a serial port on `AsyncModbusSerialClient`,
configured for a 100 ms control loop: no retries, a short per-request timeout, pymodbus's own reconnect
switched off (the session owns reconnects, with jitter, and knows why each attempt failed), pymodbus's
"close after N silent requests" switched off (same reason), TCP_NODELAY on the socket.

The request timeout is the link's own timer, not pymodbus's: when it fires, an answer already waiting in
the socket's receive buffer is not a timeout. On an overloaded loop (a cycle needing more than its time)
the timer can fire only after the loop was busy elsewhere, and libuv runs expired timers before it reads
the sockets: the answer that came meanwhile would otherwise count as a timeout, the session would drop
a unit that answers, and reconnects would pile up.

A poll that has the link to itself on socgw's client runs without a coroutine (`take_turn_now`,
`read_in_turn`): the answer's callback carries it on, with the same timer, frame checks and classification.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import select
import socket
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import cast

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusIOException
from pymodbus.pdu import ModbusPDU

from gateway.profiles.model import Table
from gateway.southbound.errors import (
    EXCEPTION_CODES,
    EXCEPTION_NAMES,
    FUNCTION_NAMES,
    ErrorCode,
    Facts,
    FieldError,
    NodeContext,
    Region,
    Target,
)
from gateway.southbound.frames import Anomaly, FrameInspector, Inspector, RtuInspector
from gateway.southbound.tcp_client import Answer, LeanTcpClient
from gateway.southbound.transport import TransportKind

_READ_FUNCTION = {Table.COIL: 0x01, Table.DISCRETE: 0x02, Table.HOLDING: 0x03, Table.INPUT: 0x04}
_UNREACHABLE_ERRNOS = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN})
_NEVER_CLOSE_BY_ITSELF = 2**31  # pymodbus closes after retries+3 silent requests; we decide that
# pymodbus empties its receive buffer without a word beyond 516 bytes, before the frame inspector sees it: a
# burst would pass for a timeout. One socket read (256 KiB) fits; the inspector rejects what is not Modbus.
_RECEIVE_BUFFER_BYTES = 256 * 1024
_ANSWER_TIMES = 8  # answered requests whose duration `request_s` looks at
# No timeout for pymodbus: it then awaits the answer's future without a `wait_for` (no timer, no waiter
# per request); the link's own timer ends it (Python 3.11 wait_for returns at once for None).
_NO_PYMODBUS_TIMEOUT = cast(float, None)
# When the timer finds the answer waiting in the socket buffer it looks again this much later: the loop
# reads the socket in between (libuv polls for I/O after it runs the timers that expired).
_RECHECK_S = 0.001
_RECHECKS = 3  # at most: a peer trickling bytes that never form an answer still times out
_CLOCK_TICK_S = 0.001  # libuv's clock counts whole milliseconds: a timer may fire this much early
_SERIAL_OPEN_ERRORS = {
    errno.ENOENT: (
        "no such serial device (unplugged, or renamed: name it by /dev/serial/by-id/...; the packaged "
        "service sees serial ports only with the drop-in in docs/rs485.md)"
    ),
    errno.EACCES: "permission denied (the service user needs the dialout group)",
    errno.EBUSY: "the serial device is in use by another program",
}
Client = AsyncModbusTcpClient | AsyncModbusSerialClient | LeanTcpClient
# A unit's requests cover the same few regions every cycle: one Region each, not one per request.
_region = functools.lru_cache(maxsize=4096)(Region)
# What `read_in_turn` calls with: the words read, or why not (a FieldError; any other exception is a bug).
ReadDone = Callable[[list[int] | Exception], None]
# What `write_in_turn` calls with: None once acknowledged, or why not (as ReadDone).
WriteDone = Callable[[Exception | None], None]


def _write_request(table: Table, address: int, words: Sequence[int]) -> tuple[Region, int]:
    """The region and function code of a write: 06 for one register, 16 for several, 05 / 15 for coils."""
    if not table.is_writable:
        raise ValueError(f"the {table.value} table is read-only in Modbus")
    single = len(words) == 1
    function_code = (0x05 if single else 0x0F) if table is Table.COIL else (0x06 if single else 0x10)
    return _region(table, address, len(words)), function_code


def silence_pymodbus_logging() -> None:
    """pymodbus logs every timeout and every dropped frame at ERROR, once per request: at 10 Hz that floods
    the journal. The session reports each of those as one classified message per change of state."""
    logging.getLogger("pymodbus.logging").setLevel(logging.CRITICAL)


class Turn:
    """One request at a time on a link: taken at once when free (`take_now`, no await: a poll's fast
    path), else in the order asked (`take`)."""

    def __init__(self) -> None:
        self._taken = False
        self._waiting: deque[asyncio.Future[None]] = deque()

    def take_now(self) -> bool:
        if self._taken or self._waiting:
            return False
        self._taken = True
        return True

    async def take(self) -> None:
        if self.take_now():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give_back()  # handed the turn, then cancelled before using it: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._waiting.remove(waiter)
            raise

    def give_back(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the turn passes to the next in line: still taken
                return
        self._taken = False


class ModbusLink:
    """A persistent connection to `target` (its transport says how); requests go to any unit id over it.

    On RTU (a serial line, or RTU over TCP) the gap between two requests is at least the line's
    inter-frame silence (3.5 characters at its baud rate) and the profile's minimum gap."""

    def __init__(
        self,
        target: Target,
        *,
        timeout_s: float,
        connect_timeout_s: float,
        min_request_gap_s: float = 0.0,
        context: NodeContext | None = None,
    ) -> None:
        silence_pymodbus_logging()
        self.target = target
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        transport = target.transport
        self.min_request_gap_s = (
            max(min_request_gap_s, transport.serial.silence_s) if transport.is_rtu else min_request_gap_s
        )
        self.context = context or NodeContext()  # for the messages; the session updates it
        self.requests = 0
        self._asking = target  # the unit of the request in progress (units share a line's link)
        self.users = 0  # sessions sharing this link (an RS-485 line); 0: one session owns it
        self._turn = Turn()  # one request at a time, whoever asks (the line carries one)
        self._open_lock = asyncio.Lock()
        self._client: Client | None = None
        self._inspector: Inspector = RtuInspector() if transport.is_rtu else FrameInspector()
        self._lost = False
        self._next_request_at = 0.0
        self._late_mark = 0  # late answers counted up to the last good answer
        self._answer_times: deque[float] = deque(maxlen=_ANSWER_TIMES)
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None  # when the outstanding request times out (None: none is)
        self._rechecks = 0
        self.answers_waiting = 0  # timeouts not declared: the answer was in the socket buffer already

    @property
    def request_s(self) -> float | None:
        """How long the device takes to answer: the slowest of its last few answers (None: none yet)."""
        return max(self._answer_times) if self._answer_times else None

    @property
    def late_answers(self) -> int:
        """Answers that came after their request was declared timed out (since the connection opened)."""
        return self._inspector.late_answers

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    def _error(
        self,
        code: ErrorCode,
        detail: str,
        *,
        region: Region | None = None,
        function_code: int | None = None,
        writing: bool = False,
        exception_code: int | None = None,
        extra: dict[str, str] | None = None,
    ) -> FieldError:
        facts = Facts(
            code,
            detail,
            self._asking,
            region=region,
            function_code=function_code,
            exception_code=exception_code,
            writing=writing,
            extra=extra or {},
        )
        return FieldError(facts, self.context)

    async def open(self) -> None:
        """Connect (closing any previous connection first); raises a classified FieldError."""
        self.close()
        client = self._new_client()
        client.set_max_no_responses(_NEVER_CLOSE_BY_ITSELF)
        client.ctx.max_buffer_size = _RECEIVE_BUFFER_BYTES
        self._inspector.reset()
        try:
            # pymodbus's connect() swallows the OSError and returns False; calling the same transport
            # factory ourselves tells the operator "refused" from "unreachable" from "no answer".
            await asyncio.wait_for(client.ctx.call_create(), timeout=self.connect_timeout_s)
        except TimeoutError:
            client.close()
            raise self._error(
                ErrorCode.CONNECT_TIMEOUT, f"no answer to the TCP connect within {self.connect_timeout_s:g} s"
            ) from None
        except ConnectionRefusedError:
            client.close()
            raise self._error(ErrorCode.CONN_REFUSED, "connection refused") from None
        except OSError as error:
            client.close()
            if self.target.transport.kind is TransportKind.SERIAL:
                reason = _SERIAL_OPEN_ERRORS.get(error.errno or 0, error.strerror or str(error))
                raise self._error(
                    ErrorCode.UNREACHABLE, f"cannot open {self.target.host}: {reason}"
                ) from None
            code = ErrorCode.UNREACHABLE if error.errno in _UNREACHABLE_ERRNOS else ErrorCode.CONN_RESET
            raise self._error(code, f"cannot connect: {error.strerror or error}") from None
        transport = client.ctx.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
            # uvloop and asyncio set it already; set it anyway so a small request never waits for Nagle.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._client = client
        self._lost = False
        self._next_request_at = 0.0

    @property
    def shared(self) -> bool:
        return self.users > 0

    async def ensure_open(self) -> None:
        """Open unless open: the first of the sessions sharing the link opens it for all."""
        async with self._open_lock:
            if not self.connected:
                await self.open()

    def release(self) -> None:
        """A session is done with the link: closed when it was the last (or the only) one."""
        self.users = max(0, self.users - 1)
        if self.users == 0:
            self.close()

    def _new_client(self) -> Client:
        target = self.target
        # reconnect_delay 0 disables pymodbus's background reconnect task
        if target.transport.kind is TransportKind.SERIAL:
            serial = target.transport.serial
            return AsyncModbusSerialClient(
                target.host,
                framer=FramerType.RTU,
                baudrate=serial.baud,
                bytesize=8,
                parity=serial.parity,
                stopbits=serial.stop_bits,
                timeout=_NO_PYMODBUS_TIMEOUT,
                retries=0,
                reconnect_delay=0,
                trace_packet=self._trace_packet,
                trace_connect=self._on_connection_change,
            )
        if not target.transport.is_rtu:
            return LeanTcpClient(
                target.host,
                target.port,
                trace_packet=self._trace_packet,
                trace_connect=self._on_connection_change,
            )
        return AsyncModbusTcpClient(
            target.host,
            port=target.port,
            framer=FramerType.RTU,
            timeout=_NO_PYMODBUS_TIMEOUT,
            retries=0,
            reconnect_delay=0,
            trace_packet=self._trace_packet,
            trace_connect=self._on_connection_change,
        )

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _on_connection_change(self, connected: bool) -> None:
        if not connected:
            self._lost = True
            self._fail_fast("connection lost")

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        passed = self._inspector(sending, data)
        if not sending and self._inspector.observation is not None:
            self._fail_fast(self._inspector.observation.detail)
        return passed

    def _fail_fast(self, reason: str) -> None:
        """End the outstanding request now rather than at its timeout: after a reset, a foreign unit id or
        a malformed frame, no valid answer will come, and waiting would stretch the whole cycle.

        pymodbus awaits `ctx.response_future` with `wait_for`; failing that future makes the request raise
        ModbusIOException at once (our `_no_answer` then classifies it from what was observed). socgw's
        own client ends its request the same way (`fail`)."""
        client = self._client
        if isinstance(client, LeanTcpClient):
            client.fail(ModbusIOException(reason))
            return
        future = client.ctx.response_future if client is not None else None
        if future is not None and not future.done():
            future.set_exception(ModbusIOException(reason))

    def _expire(self) -> None:
        """The request's time is up, unless its answer already waits in the socket buffer (the loop was
        busy when it came): then look again once the loop has read it. The timer of a request answered
        earlier looks at the time of the one outstanding now, if any."""
        self._timer = None
        deadline = self._deadline
        if deadline is None:
            return
        loop = asyncio.get_running_loop()
        if deadline - loop.time() >= _CLOCK_TICK_S:
            self._timer = loop.call_at(deadline, self._expire)
            return
        if self._rechecks < _RECHECKS and self._answer_waiting():
            self._rechecks += 1
            self.answers_waiting += 1
            self._timer = loop.call_later(_RECHECK_S, self._expire)
            return
        self._fail_fast(f"no answer within {self.timeout_s * 1000:g} ms")

    def _answer_waiting(self) -> bool:
        """Bytes (or the peer's close) wait in the receive buffer, unread by the loop yet."""
        client = self._client
        transport = client.ctx.transport if client is not None else None
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is None:  # a serial port: pyserial's transport has no socket to look at
            return False
        try:
            readable, _, _ = select.select([sock.fileno()], [], [], 0)
        except (OSError, ValueError):  # closed meanwhile: the connection-lost path reports it
            return False
        return bool(readable)

    async def read(self, table: Table, address: int, count: int, unit: int) -> list[int]:
        """Words of `count` registers (or 0/1 per bit for coil/discrete tables) starting at `address`."""
        region = _region(table, address, count)
        function_code = _READ_FUNCTION[table]
        response = await self._execute(region, function_code, False, unit, ())
        return self._words(response, table, region, function_code)

    def _words(
        self, response: ModbusPDU | Answer, table: Table, region: Region, function_code: int
    ) -> list[int]:
        """The words (or 0/1 per bit) of a read's answer; MALFORMED when it holds another count."""
        count = region.count
        if table.is_bit_table:
            bits: Sequence[bool] = response.bits
            words = [int(bit) for bit in bits[:count]]
        else:
            words = list(response.registers)
        if len(words) != count:
            raise self._error(
                ErrorCode.MALFORMED,
                f"{len(words)} values in the answer to a read of {count}",
                region=region,
                function_code=function_code,
            )
        return words

    def take_turn_now(self) -> bool:
        """Take the link for a series of `read_in_turn` without waiting: only on socgw's own Modbus TCP
        client, connected, with no gap to keep between requests and nobody else's request on it. False:
        use `read` (it waits its turn). `give_back_turn` when the series is over."""
        if self.min_request_gap_s > 0 or not isinstance(self._client, LeanTcpClient):
            return False
        return self._client.connected and self._turn.take_now()

    def give_back_turn(self) -> None:
        self._turn.give_back()

    def read_in_turn(self, table: Table, address: int, count: int, unit: int, done: ReadDone) -> None:
        """`read` without a coroutine, for the holder of the turn (`take_turn_now`): `done` gets the words,
        or the FieldError (any other exception: a bug), once the answer came or the request failed, from
        the loop (at once when it could not be sent); never raises. The same request, timer, frame checks
        and classification as `read`."""
        try:
            region = _region(table, address, count)
            function_code = _READ_FUNCTION[table]

            def answered(answer: ModbusPDU | Answer | Exception) -> None:
                if isinstance(answer, Exception):
                    done(answer)
                    return
                try:
                    words = self._words(answer, table, region, function_code)
                except Exception as error:
                    done(error)
                    return
                done(words)

            self._request_in_turn(region, function_code, writing=False, unit=unit, words=(), done=answered)
        except Exception as error:
            done(error)

    def write_in_turn(
        self, table: Table, address: int, words: Sequence[int], unit: int, done: WriteDone
    ) -> None:
        """`write` without a coroutine, for the holder of the turn (`take_turn_now`): `done` gets None once
        the device acknowledged, or the FieldError (any other exception: a bug), as `read_in_turn`'s."""
        try:
            region, function_code = _write_request(table, address, words)
            self._request_in_turn(
                region,
                function_code,
                writing=True,
                unit=unit,
                words=words,
                done=lambda answer: done(answer if isinstance(answer, Exception) else None),
            )
        except Exception as error:
            done(error)

    def _request_in_turn(
        self,
        region: Region,
        function_code: int,
        *,
        writing: bool,
        unit: int,
        words: Sequence[int],
        done: Callable[[ModbusPDU | Answer | Exception], None],
    ) -> None:
        """Send one request on socgw's own client (the turn's holder); `done` gets the accepted answer or
        the FieldError, from the loop. Raises the FieldError of a request that could not be sent."""
        client = self._ready_client(region, function_code, writing, unit)
        sent_at = self._arm()

        def answered(answer: Answer | Exception) -> None:
            self._disarm()
            try:
                if isinstance(answer, Exception):
                    raise self._failure(answer, region, function_code, writing)
                accepted = self._accept(answer, sent_at, region, function_code, writing)
            except Exception as error:
                done(error)
                return
            done(accepted)

        try:
            # Only socgw's own client (take_turn_now): its request is on its way when this returns.
            lean = cast(LeanTcpClient, client)
            lean.request_then(function_code, region.address, region.count, words, unit, then=answered)
        except Exception as error:
            self._disarm()
            raise self._failure(error, region, function_code, writing) from None

    async def write(self, table: Table, address: int, words: Sequence[int], unit: int) -> None:
        """Write registers (function 06 for one, 16 for several) or coils (05 / 15)."""
        region, function_code = _write_request(table, address, words)
        await self._execute(region, function_code, True, unit, words)

    @staticmethod
    def _send(
        client: Client, function_code: int, region: Region, unit: int, words: Sequence[int]
    ) -> Awaitable[ModbusPDU | Answer]:
        address, count = region.address, region.count
        if isinstance(client, LeanTcpClient):
            return client.request(function_code, address, count, words, unit)
        if function_code == 0x01:
            return client.read_coils(address, count=count, device_id=unit)
        if function_code == 0x02:
            return client.read_discrete_inputs(address, count=count, device_id=unit)
        if function_code == 0x03:
            return client.read_holding_registers(address, count=count, device_id=unit)
        if function_code == 0x04:
            return client.read_input_registers(address, count=count, device_id=unit)
        if function_code == 0x05:
            return client.write_coil(address, bool(words[0]), device_id=unit)
        if function_code == 0x0F:
            return client.write_coils(address, [bool(w) for w in words], device_id=unit)
        if function_code == 0x06:
            return client.write_register(address, words[0], device_id=unit)
        return client.write_registers(address, list(words), device_id=unit)

    async def _execute(
        self, region: Region, function_code: int, writing: bool, unit: int, words: Sequence[int]
    ) -> ModbusPDU | Answer:
        await self._turn.take()
        try:
            return await self._execute_alone(region, function_code, writing, unit, words)
        finally:
            self._turn.give_back()

    async def _execute_alone(
        self, region: Region, function_code: int, writing: bool, unit: int, words: Sequence[int]
    ) -> ModbusPDU | Answer:
        client = self._ready_client(region, function_code, writing, unit)
        if self.min_request_gap_s > 0:
            await self._pace()
        sent_at = self._arm()
        try:
            # A request on a disconnected client raises synchronously: keep the call inside the try.
            response = await self._send(client, function_code, region, unit, words)
        except (ModbusIOException, ConnectionException) as error:
            raise self._failure(error, region, function_code, writing) from None
        finally:
            self._disarm()
        return self._accept(response, sent_at, region, function_code, writing)

    def _ready_client(self, region: Region, function_code: int, writing: bool, unit: int) -> Client:
        """The connected client for a request to `unit`; raises NOT_CONNECTED (CONN_RESET once lost)."""
        if unit != self._asking.unit:
            self._asking = replace(self.target, unit=unit)
        client = self._client
        if client is None or not client.connected:
            raise self._error(
                ErrorCode.CONN_RESET if self._lost else ErrorCode.NOT_CONNECTED,
                "connection lost" if self._lost else "not connected",
                region=region,
                function_code=function_code,
                writing=writing,
            )
        return client

    def _arm(self) -> float:
        """A request goes out now: the frame inspector expects its answer and its timer runs; when sent."""
        self.requests += 1
        self._inspector.begin()
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        self._rechecks = 0
        self._deadline = sent_at + self.timeout_s
        # One timer at a time: one still running for an earlier request (answered since) moves on to this
        # request's time when it fires. So an answer stops no timer (libuv's are not cheap to stop), and
        # a request sent within the timeout of the one before starts none.
        if self._timer is None:
            self._timer = loop.call_at(self._deadline, self._expire)
        return sent_at

    def _disarm(self) -> None:
        """The request is over (answered or failed): its time stops counting, the inspector expecting."""
        self._deadline = None
        self._inspector.end()
        if self.min_request_gap_s > 0:
            self._next_request_at = asyncio.get_running_loop().time() + self.min_request_gap_s

    def _failure(self, error: BaseException, region: Region, function_code: int, writing: bool) -> FieldError:
        """The FieldError of a request the client ended with `error` (re-raised when it is no client's)."""
        if isinstance(error, ModbusIOException):
            return self._no_answer(region, function_code, writing)
        if isinstance(error, ConnectionException):
            return self._error(
                ErrorCode.CONN_RESET,
                "connection lost",
                region=region,
                function_code=function_code,
                writing=writing,
            )
        raise error

    def _accept(
        self, response: ModbusPDU | Answer, sent_at: float, region: Region, function_code: int, writing: bool
    ) -> ModbusPDU | Answer:
        """The answer, unless a Modbus exception (raised, classified); its time counts in `request_s`."""
        if response.isError():
            exception_code = int(getattr(response, "exception_code", 0))
            raise self._error(
                EXCEPTION_CODES.get(exception_code, ErrorCode.EXCEPTION),
                f"{EXCEPTION_NAMES.get(exception_code, 'exception')} (Modbus exception {exception_code:02X}) "
                f"to {FUNCTION_NAMES.get(function_code, f'function {function_code}')}",
                region=region,
                function_code=function_code,
                exception_code=exception_code,
                writing=writing,
            )
        self._late_mark = self._inspector.late_answers
        self._answer_times.append(asyncio.get_running_loop().time() - sent_at)
        return response

    async def _pace(self) -> None:
        """Honour the profile's minimum gap between two requests to the same device."""
        wait_s = self._next_request_at - asyncio.get_running_loop().time()
        if wait_s > 0:
            await asyncio.sleep(wait_s)

    def _no_answer(self, region: Region, function_code: int, writing: bool) -> FieldError:
        """Explain a request that got no usable answer, from what the frame inspector saw meanwhile."""
        observation = self._inspector.observation
        code = ErrorCode.TIMEOUT
        detail = f"no answer within {self.timeout_s * 1000:g} ms"
        extra: dict[str, str] = {}
        rtu = self.target.transport.is_rtu
        if observation is not None and observation.anomaly is Anomaly.MALFORMED:
            code, detail = ErrorCode.MALFORMED, f"malformed answer: {observation.detail}"
        elif observation is not None and observation.anomaly is Anomaly.CRC:
            code, detail = ErrorCode.CRC, observation.detail
        elif observation is not None and observation.anomaly is Anomaly.FRAMING:
            code, detail = ErrorCode.FRAMING, f"framing error: {observation.detail}"
        elif observation is not None and observation.anomaly is Anomaly.WRONG_TID:
            code, detail = ErrorCode.WRONG_TID, f"wrong answer: {observation.detail}"
            extra["got"] = str(observation.transaction_id)
        elif observation is not None and observation.anomaly is Anomaly.UNIT_MISMATCH:
            code, detail = ErrorCode.UNIT_MISMATCH, f"the answer came from unit {observation.unit}"
            extra["got"] = str(observation.unit)
        elif self._lost:
            code, detail = ErrorCode.CONN_RESET, "the device closed the connection during the request"
        elif self._inspector.pending_bytes:
            code = ErrorCode.FRAMING if rtu else ErrorCode.MALFORMED
            kind = "an RTU" if rtu else "a Modbus TCP"
            detail = f"{self._inspector.pending_bytes} bytes received that never formed {kind} frame"
        elif self._inspector.late_answers > self._late_mark:
            extra["late"] = "1"
        return self._error(
            code, detail, region=region, function_code=function_code, writing=writing, extra=extra
        )
