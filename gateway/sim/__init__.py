"""The battery-fleet simulator: pack physics served over Modbus TCP through the profile codec.

- `physics`: pure pack model (SOC, OCV/sag, heat, tapering and derated limits, standby, reserve, watchdog).
- `values`: the engineering value of each vocabulary point from the physics, and what a write does.
- `device`: one pack's register bank, encoded and decoded with `gateway.profiles.codec`.
- `faults`: fault knobs (delays, drops, wrong unit id, exceptions, garbage, silence, connection limits).
- `server`: a small asyncio Modbus TCP server per pack (MBAP, function codes 1-6, 15, 16).
- `scenario`: scenario files (`scenarios/*.yaml`) and `uniform_fleet` for `--packs N`.
- `fleet`: `SimulatedFleet` (async start/stop on one loop) and `FleetThread` (the same in a thread).
"""
