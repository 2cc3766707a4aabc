"""The splice: two connections joined end to end on the loop, with no task per direction.

Each end is a `Half` (an asyncio protocol). Until the two are joined, what a half receives is kept
(the client's first frame, judged by the protocol's sniffer, and whatever follows it while the door
connects to the stack); once joined, every chunk goes straight from `data_received` to the other
transport's `write`, and a full write buffer pauses reading on the other side (flow control)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

from gateway.northbound.frontdoor.sniff import Verdict

FIRST_FRAME_BYTES = 4096  # more than this without a verdict is not the protocol
VALID = "valid"


class Half(asyncio.Protocol):
    """One end of a splice. `first` (with a sniffer) resolves to VALID or why not; `ended` to why the
    connection ended; `received_at` is the loop time of the last bytes received."""

    def __init__(self, sniff: Callable[[bytes], Verdict] | None = None) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._sniff = sniff
        self.transport: asyncio.Transport | None = None
        self.other: Half | None = None
        self.kept = bytearray()
        self.first: asyncio.Future[str] = loop.create_future()
        self.ended: asyncio.Future[str] = loop.create_future()
        self.received_at = loop.time()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received_at = self._loop.time()
        other = self.other
        if other is not None and other.transport is not None:
            other.transport.write(data)
            return
        self.kept += data
        if self._sniff is not None and not self.first.done():
            verdict = self._sniff(bytes(self.kept))
            if verdict is Verdict.VALID:
                self.first.set_result(VALID)
            elif verdict is Verdict.INVALID or len(self.kept) > FIRST_FRAME_BYTES:
                self.first.set_result("not-the-protocol")

    def eof_received(self) -> bool:
        self._end("peer-closed")
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._end("reset" if exc is not None else "peer-closed")
        if self.other is not None and self.other.transport is not None:
            self.other.transport.close()  # after what is still buffered for it

    def pause_writing(self) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.resume_reading()

    def join(self, other: Half) -> None:
        """Splice this half to `other`; what either kept goes to the other first."""
        self.other, other.other = other, self
        for source, sink in ((self, other), (other, self)):
            if source.kept and sink.transport is not None:
                sink.transport.write(bytes(source.kept))
            source.kept.clear()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _end(self, reason: str) -> None:
        if not self.first.done():
            self.first.set_result("closed-before-first-frame")
        if not self.ended.done():
            self.ended.set_result(reason)


async def until_end(client: Half, stack: Half, idle_s: float) -> str:
    """Why the spliced session ended: the client closed or reset it, the stack closed it, or the client
    sent nothing for `idle_s` (0: never)."""
    loop = asyncio.get_running_loop()
    ends: set[asyncio.Future[str]] = {client.ended, stack.ended}
    while True:
        timeout = max(0.0, client.received_at + idle_s - loop.time()) if idle_s else None
        await asyncio.wait(ends, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if client.ended.done():
            return client.ended.result()
        if stack.ended.done():
            return "stack-closed"
        if loop.time() - client.received_at >= idle_s:
            return "idle"
