"""Read planning: coalescing, limits, holes; properties over random register maps."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.profiles.loader import load_profile
from gateway.profiles.model import Access, Comms, DataType, Point, Table
from gateway.profiles.plan import ReadBlock, plan_reads, split_block
from tests.conftest import PROFILES


def reg(
    name: str, address: int, count: int = 1, table: Table = Table.HOLDING, access: Access = Access.READ
) -> Point:
    data_type = DataType.STR if count > 1 else DataType.U16
    return Point(name, table, address, data_type, count, access=access)


def spans(blocks: list[ReadBlock]) -> list[tuple[str, int, int]]:
    return [(block.table.value, block.start, block.count) for block in blocks]


def test_neighbours_coalesce_and_holes_split() -> None:
    points = [reg("a", 0), reg("b", 1, 2), reg("c", 5), reg("d", 6), reg("e", 0, table=Table.INPUT)]
    assert spans(plan_reads(points, Comms())) == [("holding", 0, 3), ("holding", 5, 2), ("input", 0, 1)]
    assert spans(plan_reads(points, Comms(max_gap_registers=2))) == [("holding", 0, 7), ("input", 0, 1)]


def test_blocks_respect_the_device_limit() -> None:
    points = [reg(f"p{i}", i) for i in range(10)]
    assert spans(plan_reads(points, Comms(max_registers_per_read=4))) == [
        ("holding", 0, 4),
        ("holding", 4, 4),
        ("holding", 8, 2),
    ]
    bits = [reg(f"c{i}", i, table=Table.COIL) for i in range(5)]
    assert spans(plan_reads(bits, Comms(max_registers_per_read=1, max_bits_per_read=3))) == [
        ("coil", 0, 3),
        ("coil", 3, 2),
    ]


def test_write_only_points_are_not_read_and_oversized_points_are_refused() -> None:
    points = [reg("a", 0), reg("reset", 1, access=Access.WRITE), reg("b", 2)]
    assert spans(plan_reads(points, Comms())) == [("holding", 0, 1), ("holding", 2, 1)]
    with pytest.raises(ValueError, match="more than the 4"):
        plan_reads([reg("long", 0, 5)], Comms(max_registers_per_read=4))


def test_split_block_hands_each_point_its_words() -> None:
    (block,) = plan_reads([reg("a", 10), reg("b", 12, 2)], Comms(max_gap_registers=1))
    assert split_block(block, [1, 2, 3, 4]) == {"a": [1], "b": [3, 4]}
    with pytest.raises(ValueError, match="returned 2 values"):
        split_block(block, [1, 2])
    (coils,) = plan_reads([reg("c", 0, table=Table.COIL)], Comms())
    assert split_block(coils, [True, False, False, False, False, False, False, False]) == {"c": [True]}


def test_shipped_profiles_plan_within_limits() -> None:
    sunspec = load_profile(PROFILES / "sunspec" / "battery-802.yaml")
    blocks = plan_reads(sunspec.variants[0].points.values(), sunspec.comms)
    assert len(blocks) == 1  # SunSpec blocks are contiguous: one read of the whole map
    assert blocks[0].count <= sunspec.comms.max_registers_per_read
    mp2000 = load_profile(PROFILES / "microstore" / "mp2000.yaml")
    tables = [block.table for block in plan_reads(mp2000.variants[0].points.values(), mp2000.comms)]
    assert tables == [Table.HOLDING, Table.INPUT, Table.COIL, Table.DISCRETE]


@st.composite
def register_maps(draw: st.DrawFn) -> list[Point]:
    points: list[Point] = []
    for table in draw(st.lists(st.sampled_from(list(Table)), min_size=1, max_size=4, unique=True)):
        address = draw(st.integers(0, 200))
        for index in range(draw(st.integers(1, 40))):
            address += draw(st.integers(0, 6))  # a hole of up to 6 addresses
            count = draw(st.integers(1, 8))
            access = draw(st.sampled_from(list(Access)))
            points.append(reg(f"{table}{index}", address, count, table, access))
            address += count
    return points


@settings(max_examples=300, deadline=None)
@given(
    points=register_maps(), limit=st.integers(8, 125), gap=st.integers(0, 7), bit_limit=st.integers(8, 2000)
)
def test_plan_properties(points: list[Point], limit: int, gap: int, bit_limit: int) -> None:
    comms = Comms(max_registers_per_read=limit, max_gap_registers=gap, max_bits_per_read=bit_limit)
    blocks = plan_reads(points, comms)
    covered = [point for block in blocks for point in block.points]
    readable = [point for point in points if point.access.readable]
    assert sorted(p.name for p in covered) == sorted(p.name for p in readable)  # each exactly once
    for block in blocks:
        assert block.count <= (bit_limit if block.table.is_bit_table else limit)
        members = sorted(block.points, key=lambda p: p.address)
        assert all(p.table is block.table for p in members)
        assert members[0].address == block.start
        assert max(p.end for p in members) == block.end
        end = block.start
        for member in members:
            assert member.address - end <= gap  # never a hole wider than allowed
            end = max(end, member.end)
