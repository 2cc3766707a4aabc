"""Every unit at once: connect, poll, write and close a set of sessions concurrently.

Each unit's work goes on by itself (its own coroutine, or for a unit on its own connection its answers'
callbacks) and `ModbusSession.poll` / `poll_soon` / `send_writes` / `send_writes_soon` never raise, so one
dead, slow or misbehaving unit never delays the others beyond its own request timeout, and never aborts
them. (A bare `gather` over pymodbus calls would: a request on a disconnected client raises before its
first await.)

For hundreds of units call `gc.freeze()` once the sessions are connected: the long-lived profile and
session objects then leave the garbage collector's generations, which shortens the collector's pauses
inside the cycle (see notes/modbus.md).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from gateway.southbound.errors import FieldError
from gateway.southbound.reading import Reading
from gateway.southbound.session import ModbusSession
from gateway.southbound.writer import WriteOutcome, WritePlan

# Requests started before the loop gets to read answers: the first units' answers then wait for the
# sends of the next POLL_BURST units at most, not for the whole fleet's (about 8 ms at 500 units).
POLL_BURST = 64


async def connect_all(sessions: Sequence[ModbusSession], now: float) -> dict[str, FieldError]:
    """Connect and identify every unit concurrently; the failures by node id (they retry on their own)."""

    async def one(session: ModbusSession) -> FieldError | None:
        try:
            await session.connect(now)
        except FieldError as error:
            return error
        return None

    results = await asyncio.gather(*(one(session) for session in sessions))
    return {
        session.node_id: error for session, error in zip(sessions, results, strict=True) if error is not None
    }


async def poll_all(
    sessions: Sequence[ModbusSession], now: float, each: Callable[[int, Reading], None] | None = None
) -> list[Reading]:
    """One reading per unit, in the order of `sessions`; `each(index, reading)` is called as each comes
    (on the loop's thread: it must return at once; what it raises, `poll_all` raises).

    A unit that needs only requests on its own connection polls without a coroutine
    (`ModbusSession.poll_soon`): its answers drive it, and one future waits for them all. The others (on
    a shared line, connecting, closed) each get their coroutine, as before."""
    readings: list[Reading | None] = [None] * len(sessions)
    all_in: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    remaining = len(sessions)

    def arrived(index: int, reading: Reading) -> None:
        nonlocal remaining
        if all_in.done():  # an `each` raised, or the poll was cancelled: nobody waits any more
            return
        readings[index] = reading
        try:
            if each is not None:
                each(index, reading)
        except Exception as error:
            all_in.set_exception(error)
            return
        remaining -= 1
        if remaining == 0:
            all_in.set_result(None)

    async def awaited(index: int, session: ModbusSession) -> None:
        arrived(index, await session.poll(now))

    waiting = []
    for index, session in enumerate(sessions):
        if not session.poll_soon(now, functools.partial(arrived, index)):
            waiting.append(awaited(index, session))
        if index % POLL_BURST == POLL_BURST - 1:
            await asyncio.sleep(0)  # the loop reads the answers already in before the next requests go
    if not sessions:
        all_in.set_result(None)
    await _all_in(all_in, waiting)
    return [reading for reading in readings if reading is not None]  # every one: `remaining` reached 0


async def write_all(
    sessions: Sequence[ModbusSession], setpoints: Mapping[str, Mapping[str, float]], now: float
) -> dict[str, list[WriteOutcome]]:
    """Write each unit's setpoints (by node id; units without an entry still get their heartbeat).

    Each unit's writes are decided first, without a request; only the units with something to send
    send. A unit with its connection to itself sends without a coroutine (`send_writes_soon`): its
    answers drive it, and one future waits for them all, as in `poll_all`. The others get a coroutine."""
    plans = [session.plan_writes(setpoints.get(session.node_id, {}), now) for session in sessions]
    outcomes = {
        session.node_id: [outcome for outcome in plan.outcomes if outcome is not None]
        for session, plan in zip(sessions, plans, strict=True)
    }
    sending = [(session, plan) for session, plan in zip(sessions, plans, strict=True) if not plan.idle]
    if not sending:
        return outcomes
    all_in: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    remaining = len(sending)

    def sent(node_id: str, done: list[WriteOutcome]) -> None:
        nonlocal remaining
        outcomes[node_id] = done
        remaining -= 1
        if remaining == 0 and not all_in.done():
            all_in.set_result(None)

    async def awaited(session: ModbusSession, plan: WritePlan) -> None:
        sent(session.node_id, await session.send_writes(plan, now))

    waiting = [
        awaited(session, plan)
        for session, plan in sending
        if not session.send_writes_soon(plan, now, functools.partial(sent, session.node_id))
    ]
    await _all_in(all_in, waiting)
    return outcomes


async def _all_in(all_in: asyncio.Future[None], waiting: Sequence[Coroutine[Any, Any, None]]) -> None:
    """Wait for `all_in` while the units that need a coroutine run theirs; cancelled, cancel those too."""
    coroutines = asyncio.gather(*waiting) if waiting else None
    try:
        await all_in
    except asyncio.CancelledError:
        if coroutines is not None:
            coroutines.cancel()
        raise


async def close_all(sessions: Sequence[ModbusSession]) -> None:
    await asyncio.gather(*(session.close() for session in sessions))
