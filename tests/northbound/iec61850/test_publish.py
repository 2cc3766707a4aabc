"""What the server shows for a snapshot (value, quality, time) and the updater's latest-wins slot: the
pure parts of the IEC 61850 adapter (its controls are decided by the control table, tests/mapping)."""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime, timedelta

import pytest

from gateway.balancer import BalancerParams, SiteCommand, dispatch
from gateway.fleet import FleetState, NodeState, Quality
from gateway.mapping.iec61850 import load_map
from gateway.northbound.adapter import NodeUpdate
from gateway.northbound.iec61850.model import VALUE_KIND, Publication
from gateway.northbound.iec61850.updater import (
    QUALITY_GOOD,
    QUALITY_INVALID,
    QUALITY_OLD,
    LatestSlot,
    Reading,
    read_publication,
)
from gateway.snapshot import CycleSnapshot
from tests.mapping.test_iec61850 import SHIPPED

WALL = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
WALL_MS = int(WALL.timestamp() * 1000)


def snapshot(index: int = 1) -> CycleSnapshot:
    nodes = (
        NodeState("pack-01", soc_pct=50.0, capacity_wh=2000.0, power_w=100.0),
        NodeState("pack-02", quality=Quality.STALE, age_s=1.5, soc_pct=40.0, capacity_wh=2000.0),
        NodeState("pack-03", quality=Quality.FAILED, error_code="E_TIMEOUT", age_s=math.inf),
    )
    fleet = FleetState(nodes, timestamp_s=10.0)
    params = BalancerParams()
    command = SiteCommand(request_w=300.0)
    decision = dispatch(fleet, command, params, None, 10.0)
    return CycleSnapshot(index, WALL, fleet, command, decision, params)


def publication(logical_node: str, data_object: str, node_id: str | None) -> Publication:
    iec_map = load_map(SHIPPED)
    device = iec_map.fleet if node_id is None else iec_map.pack
    ln = device.logical_node(logical_node)
    spec = ln.object(data_object) if ln is not None else None
    assert spec is not None
    return Publication(f"{logical_node}.{data_object}", spec, node_id, VALUE_KIND[spec.cdc], 0, 0, 0)


def test_a_good_pack_shows_its_values_good_now() -> None:
    assert read_publication(publication("ZBAT1", "Soc", "pack-01"), snapshot()) == Reading(
        50.0, QUALITY_GOOD, WALL_MS
    )


def test_a_stale_pack_shows_questionable_old_data_at_the_time_it_was_read() -> None:
    reading = read_publication(publication("ZBAT1", "Soc", "pack-02"), snapshot())
    assert reading == Reading(40.0, QUALITY_OLD, WALL_MS - 1500)


def test_a_failed_pack_shows_invalid_not_a_number_and_its_alarms_stay_good() -> None:
    state = snapshot()
    assert read_publication(publication("ZBAT1", "Soc", "pack-03"), state) == Reading(
        None, QUALITY_INVALID, WALL_MS
    )
    assert read_publication(publication("ZBAT1", "ComAlm", "pack-03"), state) == Reading(
        True, QUALITY_GOOD, WALL_MS
    )
    assert read_publication(publication("ZBAT1", "BatSt", "pack-03"), state).value is False
    assert read_publication(publication("ZBAT1", "BalMod", "pack-03"), state).value == 3  # offline
    health = read_publication(publication("LLN0", "Health", "pack-03"), state)
    assert health == Reading(3, QUALITY_GOOD, WALL_MS)  # Alarm, through the map's `states`


def test_fleet_values_and_constants() -> None:
    state = snapshot()
    soc = read_publication(publication("ZBAT1", "Soc", None), state)
    assert soc.value == pytest.approx(state.fleet.mean_soc_pct) and soc.quality == QUALITY_GOOD
    assert read_publication(publication("DRCC1", "OutWSet", None), state).value == 300.0
    assert read_publication(publication("LLN0", "Beh", None), state) == Reading(1, QUALITY_GOOD, WALL_MS)


def test_the_slot_keeps_only_the_latest_snapshot() -> None:
    slot = LatestSlot()
    slot.put(snapshot(1))
    slot.put(snapshot(2))
    taken = slot.take()
    assert taken is not None and taken[0] is not None and taken[0].index == 2
    closer = threading.Timer(0.05, slot.close)
    closer.start()
    assert slot.take() is None  # a waiting updater wakes up when the slot closes
    closer.join()


def test_the_slot_keeps_the_newest_state_of_each_node_until_a_snapshot_carries_them() -> None:
    slot = LatestSlot()
    old, new = NodeState("pack-01", soc_pct=40.0), NodeState("pack-01", soc_pct=41.0)
    other = NodeState("pack-02", soc_pct=50.0)
    slot.put(snapshot(1))
    slot.put_nodes(NodeUpdate((old, other), WALL))
    slot.put_nodes(NodeUpdate((new,), WALL + timedelta(milliseconds=3)))
    assert slot.take() == (snapshot(1), [new, other], WALL_MS + 3)  # the snapshot first, then them
    slot.put_nodes(NodeUpdate((old,), WALL))
    slot.put(snapshot(2))  # newer than those states: it carries them
    assert slot.take() == (snapshot(2), [], WALL_MS)


def test_a_node_publication_shows_the_state_it_is_given() -> None:
    newer = NodeState("pack-01", soc_pct=52.0, capacity_wh=2000.0)
    reading = read_publication(publication("ZBAT1", "Soc", "pack-01"), snapshot(), WALL_MS + 40, newer)
    assert reading == Reading(52.0, QUALITY_GOOD, WALL_MS + 40)
