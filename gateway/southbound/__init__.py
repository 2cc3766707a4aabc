"""The southbound Modbus TCP adapter (field devices). What the engine uses:

    session = ModbusSession(node_id, host, port, unit, profile,
                            options=SessionOptions.for_node(timeout_ms))  # one per unit
    await connect_all(sessions, now)                              # optional: poll connects by itself
    readings = await poll_all(sessions, now)                      # every cycle, one Reading per unit
    fleet = FleetState(tuple(r.to_node_state() for r in readings), now)
    outcomes = await write_all(sessions, {node_id: {"setpoint_w": 600.0}}, now)
    await close_all(sessions)

What the field tools use: `SessionOptions.for_tool(timeout_ms)`, `session.connect(now)`, then
`session.read_point(name)` (one point, its scale factor resolved) and `session.write_setpoints(...)`.

Modules: `link` (one pymodbus connection, classified failures), `frames` (what came back on the wire),
`session` (lifecycle, identification, reads, writes), `writer` (idempotent write bookkeeping),
`identify` (markers, firmware, variants), `errors` (codes and messages), `poller` (all units at once),
`reading` (what a poll or a point read yields), `backoff` (reconnect pacing); for the field tools:
`discover` (scan and identify), `check` (profile check).
"""
