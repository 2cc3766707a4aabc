"""The southbound Modbus TCP adapter: what the engine uses.

    session = ModbusSession(node_id, host, port, unit, profile)   # one per unit
    await connect_all(sessions, now)                              # optional: poll connects by itself
    readings = await poll_all(sessions, now)                      # every cycle, one Reading per unit
    fleet = FleetState(tuple(r.to_node_state() for r in readings), now)
    outcomes = await write_all(sessions, {node_id: {"setpoint_w": 600.0}}, now)
    await close_all(sessions)

Modules: `link` (one pymodbus connection, classified failures), `frames` (what came back on the wire),
`session` (lifecycle, identification, reads, writes), `writer` (idempotent write bookkeeping),
`identify` (markers, firmware, variants), `errors` (codes and messages), `poller` (all units at once),
`reading` (what a poll yields); for the field tools: `discover` (scan and identify), `check` (profile check).
"""

from gateway.southbound.errors import ErrorCode, FieldError
from gateway.southbound.link import silence_pymodbus_logging
from gateway.southbound.poller import close_all, connect_all, poll_all, write_all
from gateway.southbound.reading import Reading
from gateway.southbound.session import ModbusSession, SessionOptions, SessionState
from gateway.southbound.writer import WriteOutcome, WritePolicy, WriteStatus

__all__ = [
    "ErrorCode",
    "FieldError",
    "ModbusSession",
    "Reading",
    "SessionOptions",
    "SessionState",
    "WriteOutcome",
    "WritePolicy",
    "WriteStatus",
    "close_all",
    "connect_all",
    "poll_all",
    "silence_pymodbus_logging",
    "write_all",
]
