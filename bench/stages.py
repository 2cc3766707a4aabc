"""Where one pack's new value spends its time inside the gateway: per-stage timestamps for bench.freshness.

    python -m bench.stages run -c gateway.yaml      (what bench.freshness starts instead of `socgw run`)

With `STAGES_VARIABLE` set to `<file>:<node id>`, this wraps a few of the gateway's functions, in the
core and (through the supervisor's `start_child`) in each adapter process, so that each stage of that
one node's values appends a line `{"stage", "t", "soc", ...}` to the file (O_APPEND: whole lines from
every process and thread). `t` is `time.perf_counter()`, CLOCK_MONOTONIC on Linux, one clock for every
process of the machine, so the bench subtracts times taken in different processes. The stages:

- core: `polled` (the node's poll request starts), `answered` (its state reaches the adapter supervisor),
  `sent` (the frame carrying it is about to be encoded and offered to the children: a NODES frame, or
  the cycle's snapshot when the cycle ended before the batch did);
- each child (`section`): `received` (the frame decoded), `applying` and `applied` (before and after the
  hand-over to the stack: DNP3, the adapter's publish and the stack's `Apply`, on the child's loop;
  IEC 61850, the updater thread's write of the model; MQTT, the Sparkplug messages' encoding on the
  client's thread, next the broker).

Only the watched node pays for a record; the others pass through one wrapper call, which the product
never has: the gateway itself carries no probe. Nothing here is imported by `gateway/`.

`VARIANT_VARIABLE` (JSON) sets what bench.freshness compares side by side: `batch_s` (the supervisor's
least time between NODES frames), `doubling_batches` (the schedule the gateway had before: a frame 5 ms
after the first answer of a poll, each later batch twice as long), `child_cpus` (the CPUs each
adapter process moves to as it starts, before its stack's threads exist), `child_gc_default` (each
adapter process keeps Python's collector as it starts: no `settle_collector`), `whole_bursts` (the gateway
before `POLL_BURST` and `NODE_FRAME_STATES`: every request of a poll sent before an answer is read, a
NODES frame with every answer read in one turn of the loop), `whole_polls` (only the first of the
two). Each adapter process also
records its garbage collections longer than 5 ms (`gc`).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

STAGES_VARIABLE: Final = "SOCGW_BENCH_STAGES"
VARIANT_VARIABLE: Final = "SOCGW_BENCH_VARIANT"
CHILD_STAGES: Final = ("received", "applied")
CORE_STAGES: Final = ("polled", "answered", "sent")


class Recorder:
    """Appends one JSON line per stage to the shared file."""

    def __init__(self, path: str, node_id: str, role: str) -> None:
        self.node_id = node_id
        self.role = role
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def __call__(self, stage: str, soc: float | None, **extra: object) -> None:
        now = time.perf_counter()
        line = {"stage": stage, "t": now, "soc": soc, "role": self.role, **extra}
        os.write(self._fd, (json.dumps(line) + "\n").encode())


def recorder_from_environment(role: str) -> Recorder | None:
    setting = os.environ.get(STAGES_VARIABLE)
    if not setting:
        return None
    path, node_id = setting.rsplit(":", 1)
    return Recorder(path, node_id, role)


def _soc_in(nodes: Sequence[Any], node_id: str) -> float | None:
    """The watched node's SOC among these states; None when it is not among them."""
    for state in nodes:
        if state.node_id == node_id:
            soc: float | None = state.soc_pct
            return soc
    return None


def variant_from_environment() -> dict[str, Any]:
    settings: dict[str, Any] = json.loads(os.environ.get(VARIANT_VARIABLE) or "{}")
    return settings


def _wrap(owner: object, name: str, wrapper: Callable[[Any], Any]) -> None:
    """Replace `owner.name` with `wrapper(original)`."""
    setattr(owner, name, wrapper(getattr(owner, name)))


DOUBLING_FIRST_S: Final = 0.005


def install_doubling_batches(cls: type) -> None:
    """The supervisor's batches as they were before the frames went at the end of the loop's burst:
    the first NODES frame of a poll DOUBLING_FIRST_S after the first answer, each later batch of the
    poll twice as long as the one before (5, 10, 20, 40 ms)."""

    def node_arrived(original: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
        def rescheduled(self: Any, state: Any) -> None:
            waiting = self._batch
            original(self, state)
            if waiting is None and self._batch is not None:  # a batch starts: on the old schedule
                self._batch.cancel()
                delay = getattr(self, "doubling_s", DOUBLING_FIRST_S)
                self._batch = asyncio.get_running_loop().call_later(delay, self._send_arrived)

        return rescheduled

    def send_arrived(original: Callable[[Any], None]) -> Callable[[Any], None]:
        def doubled(self: Any) -> None:
            self.doubling_s = getattr(self, "doubling_s", DOUBLING_FIRST_S) * 2
            original(self)

        return doubled

    def publish(original: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
        def reset(self: Any, snapshot: Any) -> None:
            self.doubling_s = DOUBLING_FIRST_S
            original(self, snapshot)

        return reset

    _wrap(cls, "node_arrived", node_arrived)
    _wrap(cls, "_send_arrived", send_arrived)
    _wrap(cls, "publish", publish)


def install_core(record: Recorder) -> None:
    """Wrap the core's poll of the watched node, the supervisor's intake and its frames."""
    from gateway.northbound.process import supervisor
    from gateway.southbound import fieldbus

    watched = record.node_id

    def recorded_poll(poll: Callable[[float], Awaitable[Any]]) -> Callable[[float], Awaitable[Any]]:
        async def recorded(now: float) -> Any:
            record("polled", None)
            return await poll(now)

        return recorded

    def recorded_poll_soon(poll_soon: Callable[..., bool]) -> Callable[..., bool]:
        def recorded(now: float, done: Callable[[Any], None]) -> bool:
            record("polled", None)  # a fleet's poll starts the unit's requests without a coroutine
            return poll_soon(now, done)

        return recorded

    def build_sessions(build: Callable[..., list[Any]]) -> Callable[..., list[Any]]:
        def recorded(*args: Any, **kwargs: Any) -> list[Any]:
            sessions = build(*args, **kwargs)
            for session in sessions:
                if session.node_id == watched:  # only the watched session pays
                    _wrap(session, "poll", recorded_poll)
                    _wrap(session, "poll_soon", recorded_poll_soon)
            return sessions

        return recorded

    def node_arrived(original: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
        def recorded(self: Any, state: Any) -> None:
            if state.node_id == watched:
                record("answered", state.soc_pct)
            original(self, state)

        return recorded

    # `sent` is recorded before the frame is encoded and offered: a child on the same CPU may decode it
    # before the offer returns.
    # Which NODES frame of its poll carried the watched node, and with how many states.
    def send_arrived(original: Callable[[Any], None]) -> Callable[[Any], None]:
        def recorded(self: Any) -> None:
            self.frames_in_poll = getattr(self, "frames_in_poll", 0) + 1
            soc = _soc_in(self._arrived, watched)
            if soc is not None:
                record("sent", soc, frame="nodes", index=self.frames_in_poll, states=len(self._arrived))
            original(self)

        return recorded

    def publish(original: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
        def recorded(self: Any, snapshot: Any) -> None:
            soc = _soc_in(self._arrived, watched) if self._batch is not None else None
            if soc is not None:
                record("sent", soc, frame="snapshot", index=0, states=len(self._arrived))
            self.frames_in_poll = 0
            original(self, snapshot)

        return recorded

    def start_child(original: Callable[..., Any]) -> Callable[..., Any]:
        def with_stages(module: str, arguments: Sequence[str], *rest: Any) -> Any:
            return original("bench.stages", ["child", module, *arguments], *rest)

        return with_stages

    variant = variant_from_environment()
    if variant.get("batch_s") is not None:
        supervisor.NODE_BATCH_S = variant["batch_s"]  # type: ignore[misc]
    if variant.get("doubling_batches"):
        install_doubling_batches(supervisor.AdapterSupervisor)
    if variant.get("whole_bursts") or variant.get("whole_polls"):
        from gateway.southbound import poller

        poller.POLL_BURST = sys.maxsize
    if variant.get("whole_bursts"):
        supervisor.NODE_FRAME_STATES = sys.maxsize  # type: ignore[misc]
    _wrap(fieldbus, "build_sessions", build_sessions)
    _wrap(supervisor.AdapterSupervisor, "node_arrived", node_arrived)
    _wrap(supervisor.AdapterSupervisor, "_send_arrived", send_arrived)
    _wrap(supervisor.AdapterSupervisor, "publish", publish)
    _wrap(supervisor, "start_child", start_child)


def install_child(record: Recorder, section: str) -> None:
    """Wrap the child's frame decoding and its adapter's hand-over to the stack (only this section's
    modules are imported: libiec61850 and yadnp3 never share a process)."""
    from gateway.northbound.adapter import NodeUpdate
    from gateway.northbound.process import child

    watched = record.node_id

    def nodes_soc(nodes: Sequence[Any], *_: Any) -> float | None:
        return _soc_in(nodes, watched)

    def update_soc(update: Any) -> float | None:
        return _soc_in(update.nodes, watched)

    def snapshot_soc(snapshot: Any, *_: Any) -> float | None:
        return _soc_in(snapshot.fleet.nodes, watched)

    def decode_frame(original: Callable[[int, bytes], Any]) -> Callable[[int, bytes], Any]:
        def recorded(kind: int, body: bytes) -> Any:
            content = original(kind, body)
            soc = update_soc(content) if isinstance(content, NodeUpdate) else snapshot_soc(content)
            if soc is not None:
                record("received", soc, section=section, frame=type(content).__name__)
            return content

        return recorded

    def applied(soc: Callable[..., float | None]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def wrapper(original: Callable[..., Any]) -> Callable[..., Any]:
            def recorded(self: Any, *args: Any) -> Any:
                value = soc(*args)
                if value is not None:
                    record("applying", value, section=section, via=original.__name__)
                result = original(self, *args)
                if value is not None:
                    record("applied", value, section=section, via=original.__name__)
                return result

            return recorded

        return wrapper

    _wrap(child, "decode_frame", decode_frame)
    if section == "dnp3":
        from gateway.northbound.dnp3.outstation import Dnp3Outstation

        _wrap(Dnp3Outstation, "publish_nodes", applied(update_soc))
        _wrap(Dnp3Outstation, "publish", applied(snapshot_soc))
    elif section == "iec61850":
        from gateway.northbound.iec61850.updater import Updater

        _wrap(Updater, "apply_nodes", applied(nodes_soc))
        _wrap(Updater, "apply", applied(snapshot_soc))
    elif section == "mqtt":
        from gateway.northbound.mqtt.edge import EdgeNode

        _wrap(EdgeNode, "update_nodes", applied(nodes_soc))
        _wrap(EdgeNode, "update", applied(snapshot_soc))


GC_PAUSE_RECORDED_S: Final = 0.005


def record_gc_pauses(record: Recorder, section: str) -> None:
    """A `gc` record for every collection in this process that took longer than GC_PAUSE_RECORDED_S
    (it holds the GIL: every Python thread of the process waits)."""
    started: list[float] = []

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[:] = [time.perf_counter()]
        elif started:
            seconds = time.perf_counter() - started[0]
            if seconds > GC_PAUSE_RECORDED_S:
                record("gc", None, section=section, ms=seconds * 1000.0, generation=info["generation"])

    gc.callbacks.append(callback)


def keep_default_collector() -> None:
    """Variant `child_gc_default`: the adapter process as before `settle_collector` (no `gc.freeze()`,
    the default thresholds)."""
    from gateway.northbound.process import child

    _wrap(child, "settle_collector", lambda _original: lambda: None)


def main(argv: Sequence[str]) -> int:
    if argv[:1] == ["child"]:
        module, arguments = argv[1], list(argv[2:])
        variant = variant_from_environment()
        if variant.get("child_cpus"):
            os.sched_setaffinity(0, variant["child_cpus"])
        section = arguments[arguments.index("--section") + 1]
        if variant.get("child_gc_default"):
            keep_default_collector()
        record = recorder_from_environment(module)
        if record is not None:
            record.role = section
            install_child(record, section)
            record_gc_pauses(record, section)
        from gateway.northbound.process import child

        return child.main(arguments)
    record = recorder_from_environment("core")
    if record is not None:
        install_core(record)
    from gateway import cli

    return cli.main(list(argv))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
