"""What the head makes of its group's Sparkplug messages: births, deaths, seq gaps, duplicate packs."""

from __future__ import annotations

from gateway.balancer import BalancerParams
from gateway.fleet import Quality
from gateway.hierarchy.tracker import (
    E_DUPLICATE_NODE,
    E_NDEATH,
    E_NOT_BORN,
    E_SILENT,
    ClusterTracker,
    Received,
    Scalar,
    parse_topic,
)

PARAMS = BalancerParams()
GRACE_S = 7.5
SUMMARY: tuple[tuple[str, Scalar], ...] = (
    ("energy_above_reserve_wh", 4000.0), ("energy_below_ceiling_wh", 4000.0), ("available_charge_w", 3000.0),
    ("available_discharge_w", 3000.0), ("nodes_online", 2), ("nodes_total", 2),
)  # fmt: skip


def birth(worker: str, bd_seq: int, broker: int = 0) -> Received:
    return Received(broker, "NBIRTH", worker, None, 0, (("bdSeq", bd_seq), *SUMMARY))


def message(worker: str, kind: str, seq: int, device: str | None = None, broker: int = 0) -> Received:
    return Received(broker, kind, worker, device, seq, ())


def qualities(tracker: ClusterTracker, now: float = 0.0) -> dict[str, tuple[Quality, str | None]]:
    return {state.node_id: (state.quality, state.error_code) for state in tracker.states(PARAMS, now)}


def test_a_worker_is_in_the_dispatch_from_its_birth_to_its_death_of_the_same_bdseq() -> None:
    tracker = ClusterTracker(["north", "south"], GRACE_S)
    assert qualities(tracker)["north"] == (Quality.FAILED, E_NOT_BORN)
    tracker.apply(birth("north", 3), 0.0)
    assert qualities(tracker)["north"] == (Quality.GOOD, None)
    tracker.apply(Received(0, "NDEATH", "north", None, None, (("bdSeq", 2),)), 0.1)  # an older session's
    assert qualities(tracker)["north"] == (Quality.GOOD, None)
    tracker.apply(Received(0, "NDEATH", "north", None, None, (("bdSeq", 3),)), 0.2)
    assert qualities(tracker)["north"] == (Quality.FAILED, E_NDEATH)


def test_a_seq_gap_or_data_before_birth_asks_for_a_rebirth_at_most_once_a_second() -> None:
    tracker = ClusterTracker(["north"], GRACE_S)
    assert tracker.apply(message("north", "NDATA", 7), 0.0) == "north"  # the head started after it
    assert tracker.apply(message("north", "NDATA", 8), 0.5) is None
    tracker.apply(birth("north", 0), 0.6)
    assert tracker.apply(message("north", "NDATA", 1), 0.7) is None
    assert tracker.apply(message("north", "NDATA", 3), 0.8) == "north"  # 2 was lost
    assert tracker.apply(message("north", "NDATA", 5), 1.0) is None  # asked 0.2 s ago
    assert tracker.apply(message("north", "NDATA", 7), 1.9) == "north"  # a second after the last ask
    assert qualities(tracker)["north"] == (Quality.GOOD, None)  # a gap keeps the cluster in


def test_seq_wraps_after_255() -> None:
    tracker = ClusterTracker(["north"], GRACE_S)
    tracker.apply(birth("north", 0), 0.0)
    for seq in range(1, 300):
        assert tracker.apply(message("north", "NDATA", seq % 256), 0.0) is None


def test_a_pack_claimed_by_two_workers_refuses_the_second_cluster_until_it_rebirths_without() -> None:
    tracker = ClusterTracker(["north", "south"], GRACE_S)
    tracker.apply(birth("north", 0), 0.0)
    tracker.apply(birth("south", 0), 0.0)
    tracker.apply(message("north", "DBIRTH", 1, "pack-01"), 0.0)
    tracker.apply(message("south", "DBIRTH", 1, "pack-01"), 0.0)
    assert qualities(tracker) == {"north": (Quality.GOOD, None), "south": (Quality.FAILED, E_DUPLICATE_NODE)}
    assert tracker.owner("pack-01") == "north"
    tracker.apply(birth("south", 1), 1.0)
    tracker.apply(message("south", "DBIRTH", 1, "pack-21"), 1.0)
    assert qualities(tracker)["south"] == (Quality.GOOD, None)


def test_a_silent_worker_leaves_after_the_grace_unless_it_rebirths_first_on_another_broker() -> None:
    tracker = ClusterTracker(["north", "south"], GRACE_S)
    tracker.apply(birth("north", 0, broker=0), 10.0)
    tracker.apply(birth("south", 0, broker=0), 10.0)
    tracker.apply(message("south", "NDATA", 1), 11.0)  # its heartbeat; north says nothing more
    assert qualities(tracker, 10.0 + GRACE_S) == {
        "north": (Quality.GOOD, None),
        "south": (Quality.GOOD, None),
    }
    assert qualities(tracker, 10.1 + GRACE_S)["north"] == (Quality.FAILED, E_SILENT)
    tracker.apply(birth("south", 1, broker=1), 12.0)  # moved to the other broker and rebirthed there
    tracker.apply(message("south", "NDATA", 7, broker=0), 13.0)  # a straggler of its old session
    assert tracker.workers["south"].broker == 1
    assert qualities(tracker, 12.0 + GRACE_S)["south"] == (Quality.GOOD, None)
    assert qualities(tracker, 12.1 + GRACE_S)["south"] == (Quality.FAILED, E_SILENT)


def test_unknown_workers_and_foreign_topics_are_ignored() -> None:
    tracker = ClusterTracker(["north"], GRACE_S)
    assert tracker.apply(birth("west", 0), 0.0) is None
    assert [state.node_id for state in tracker.states(PARAMS, 0.0)] == ["north"]
    assert parse_topic("spBv1.0/plant/DDATA/north/pack-01", "plant") == ("DDATA", "north", "pack-01")
    assert parse_topic("spBv1.0/other/NDATA/north", "plant") is None
    assert parse_topic("spBv1.0/STATE/head", "plant") is None
