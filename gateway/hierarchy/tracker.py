"""What the head knows of each worker, from the Sparkplug messages of its group. Pure: no I/O; the host
thread decodes each message and the control loop hands it here (`apply`), so no lock is needed.

A worker is **in the dispatch** from its NBIRTH until its NDEATH (with the bdSeq of that birth: an
older session's death, delivered late by a broker, is ignored), until it has been silent for `grace_s`
(keepalive × 1.5), or while it claims a pack another live worker owns (refused with an error naming
both). A worker publishes its `cycle/index` every 10 cycles, so silence means it is cut off, or the head
lost the broker it came through: the head does not wait for the broker's keepalive expiry (Mosquitto
2.0.11 was measured to send the Will 2-3 keepalives late), and a worker moving to the next broker
keeps its share if it rebirths there within the grace (it serves its last request meanwhile).
Every message after NBIRTH carries seq + 1 (mod 256): a gap, or data from a worker the head has not
seen born (the head started after it), asks the worker for a Rebirth (at most once a second).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.balancer import BalancerParams
from gateway.fleet import NodeState
from gateway.hierarchy.clusters import ClusterSummary, cluster_node
from gateway.logbook import RateLimitedLog, emit_to

log = logging.getLogger("socgw.hierarchy")
NAMESPACE = "spBv1.0"
REBIRTH_INTERVAL_S = 1.0
Scalar = float | int | bool | str | None

# Why a cluster is out of the dispatch (its NodeState's error_code, shown by `socgw status`).
E_NOT_BORN = "E_NOT_BORN"
E_NDEATH = "E_NDEATH"
E_SILENT = "E_SILENT"
E_DUPLICATE_NODE = "E_DUPLICATE_NODE"


@dataclass(frozen=True)
class Received:
    """One decoded message of the group: `kind` NBIRTH, NDATA, NDEATH, DBIRTH, DDATA or DDEATH."""

    broker: int  # index in the head's broker list
    kind: str
    worker: str
    device: str | None
    seq: int | None
    metrics: tuple[tuple[str, Scalar], ...]
    stale: frozenset[str] = frozenset()  # the metrics the worker marks stale (their Quality property)


def parse_topic(topic: str, group: str) -> tuple[str, str, str | None] | None:
    """(kind, edge node, device) of a topic of this group; None for anything else."""
    parts = topic.split("/")
    if len(parts) not in (4, 5) or parts[0] != NAMESPACE or parts[1] != group:
        return None
    return parts[2], parts[3], parts[4] if len(parts) == 5 else None


@dataclass
class PackReport:
    """What a worker last said of one of its packs (DBIRTH, then each DDATA's changes)."""

    metrics: dict[str, Scalar] = field(default_factory=dict)
    stale: set[str] = field(default_factory=set)
    version: int = 0  # counts the messages taken: what the head serves of it is rebuilt when it moves

    def take(self, metrics: Sequence[tuple[str, Scalar]], stale: frozenset[str]) -> None:
        self.metrics.update(metrics)
        self.stale.difference_update(name for name, _ in metrics)
        self.stale.update(stale)
        self.version += 1


@dataclass
class WorkerState:
    worker_id: str
    born: bool = False
    bd_seq: int | None = None
    seq: int | None = None
    broker: int = 0
    reason: str = E_NOT_BORN  # why it is out of the dispatch, while it is
    metrics: dict[str, Scalar] = field(default_factory=dict)
    packs: dict[str, PackReport] = field(default_factory=dict)  # DBIRTH/DDATA by pack id
    gone: set[str] = field(default_factory=set)  # packs whose DDEATH came last (offline at the worker)
    duplicates: set[str] = field(default_factory=set)
    births: int = 0
    last_seen: float = 0.0  # its last message (monotonic s)

    @property
    def in_dispatch(self) -> bool:
        return self.born and not self.duplicates


class ClusterTracker:
    def __init__(self, workers: Sequence[str], grace_s: float) -> None:
        self.workers = {worker: WorkerState(worker) for worker in workers}
        self.grace_s = grace_s
        self._asked_rebirth: dict[str, float] = {}
        self._lines = RateLimitedLog(emit_to(log))

    def apply(self, message: Received, now: float) -> str | None:
        """Take one message; returns the worker to ask for a Rebirth, if it must be asked."""
        worker = self.workers.get(message.worker)
        if worker is None:
            self._lines.log(
                f"unknown worker {message.worker}", logging.WARNING,
                f"edge node {message.worker} publishes in the head's group but is not in "
                "`hierarchy.workers`: ignored (add it there to take it into the dispatch)",
            )  # fmt: skip
            return None
        kind = message.kind
        if message.broker == worker.broker or kind == "NBIRTH":
            worker.last_seen = now
        if kind == "NBIRTH":
            self._birth(worker, message)
            return None
        if kind == "NDEATH":
            bd_seq = _metric(message.metrics, "bdSeq")
            if worker.born and bd_seq == worker.bd_seq:
                self._out(
                    worker,
                    E_NDEATH,
                    f"worker {worker.worker_id}: NDEATH (bdSeq {bd_seq}): its "
                    "share goes to the other clusters",
                )
            return None
        if not worker.born:
            return self._ask_rebirth(worker, now, "data before its birth")
        if message.broker != worker.broker:
            return None  # a straggler of its session on a broker it has left
        expected = None if worker.seq is None else (worker.seq + 1) % 256
        worker.seq = message.seq
        rebirth = None
        if message.seq is None or message.seq != expected:
            rebirth = self._ask_rebirth(
                worker, now, f"seq {message.seq} where {expected} was due: lost message"
            )
        if kind == "NDATA":
            worker.metrics.update(message.metrics)
        elif kind in ("DBIRTH", "DDATA") and message.device is not None:
            if kind == "DBIRTH":
                self._claim(worker, message.device)
                worker.packs[message.device] = PackReport()
                worker.gone.discard(message.device)
            worker.packs.setdefault(message.device, PackReport()).take(message.metrics, message.stale)
        elif kind == "DDEATH" and message.device is not None:
            worker.packs.pop(message.device, None)
            worker.gone.add(message.device)
            worker.duplicates.discard(message.device)
        return rebirth  # the data is taken all the same: newer than what the head had

    def states(self, params: BalancerParams, now: float) -> tuple[NodeState, ...]:
        """One NodeState per worker, in the configured order (clusters.cluster_node)."""
        for worker in self.workers.values():
            if worker.born and now - worker.last_seen > self.grace_s:
                self._out(
                    worker, E_SILENT,
                    f"worker {worker.worker_id}: nothing from it for {now - worker.last_seen:.1f} s (cut "
                    "off?): its share goes to the other clusters",
                )  # fmt: skip
        return tuple(
            cluster_node(worker.worker_id, ClusterSummary.from_metrics(worker.metrics), params)
            if worker.in_dispatch
            else cluster_node(
                worker.worker_id, None, params, error_code=E_DUPLICATE_NODE if worker.born else worker.reason
            )
            for worker in self.workers.values()
        )

    def owner(self, pack: str) -> str | None:
        for worker in self.workers.values():
            if worker.born and pack in worker.packs and pack not in worker.duplicates:
                return worker.worker_id
        return None

    # ---------------------------------------------------------------------------------------------

    def _birth(self, worker: WorkerState, message: Received) -> None:
        bd_seq = _metric(message.metrics, "bdSeq")
        worker.born, worker.broker, worker.seq = True, message.broker, message.seq
        worker.bd_seq = int(bd_seq) if isinstance(bd_seq, int | float) else None
        worker.metrics = dict(message.metrics)
        worker.packs.clear()
        worker.gone.clear()
        worker.duplicates.clear()
        worker.births += 1
        self._asked_rebirth.pop(worker.worker_id, None)
        log.info(
            "worker %s born on broker #%d (bdSeq %s): in the dispatch",
            worker.worker_id,
            message.broker + 1,
            worker.bd_seq,
        )

    def _claim(self, worker: WorkerState, pack: str) -> None:
        for other in self.workers.values():
            if other is not worker and other.born and pack in other.packs and pack not in other.duplicates:
                worker.duplicates.add(pack)
                self._lines.log(
                    f"duplicate {pack} {worker.worker_id}",
                    logging.ERROR,
                    f"worker {worker.worker_id} claims pack `{pack}`, which worker {other.worker_id} "
                    f"owns: cluster {worker.worker_id} is refused (out of the dispatch) until the pack ids "
                    f"are unique across workers; rename the pack in one worker's `nodes:`",
                )
                return

    def _out(self, worker: WorkerState, reason: str, message: str) -> None:
        worker.born, worker.reason, worker.seq = False, reason, None
        worker.packs.clear()
        worker.gone.clear()
        worker.duplicates.clear()
        log.warning("%s", message)

    def _ask_rebirth(self, worker: WorkerState, now: float, why: str) -> str | None:
        last = self._asked_rebirth.get(worker.worker_id)
        if last is not None and now - last < REBIRTH_INTERVAL_S:
            return None
        self._asked_rebirth[worker.worker_id] = now
        self._lines.log(
            f"rebirth {worker.worker_id}",
            logging.INFO,
            f"worker {worker.worker_id}: {why}; Rebirth requested",
        )
        return worker.worker_id


def _metric(metrics: Sequence[tuple[str, Scalar]], name: str) -> Scalar:
    for key, value in metrics:
        if key == name:
            return value
    return None
