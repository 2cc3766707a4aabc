"""Read planning: which block reads fetch a set of points with the fewest requests. Pure.

Neighbouring points of the same table are merged into one read while the block stays within the
device's per-request limit; a hole between two points is read only when `comms.max_gap_registers`
allows it (many devices answer "illegal data address" for unmapped registers, hence the default 0).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gateway.profiles.model import Comms, Point, Table

__all__ = ["ReadBlock", "plan_reads", "split_block"]


@dataclass(frozen=True)
class ReadBlock:
    """One read request: `count` registers (or bits) of `table` from `start`, holding `points`."""

    table: Table
    start: int
    count: int
    points: tuple[Point, ...]

    @property
    def end(self) -> int:
        """First address after the block."""
        return self.start + self.count


def _limit(table: Table, comms: Comms) -> int:
    return comms.max_bits_per_read if table.is_bit_table else comms.max_registers_per_read


def plan_reads(points: Iterable[Point], comms: Comms) -> list[ReadBlock]:
    """Block reads covering every readable point once, ordered by table then address.

    Write-only points (`access: w`) are left out. Raises ValueError for a point wider than the
    device's per-request limit (the loader rejects such profiles).
    """
    by_table: dict[Table, list[Point]] = {}
    for point in points:
        if point.access.readable:
            by_table.setdefault(point.table, []).append(point)
    blocks: list[ReadBlock] = []
    for table in Table:
        members = sorted(by_table.get(table, ()), key=lambda p: (p.address, p.count))
        limit = _limit(table, comms)
        current: list[Point] = []
        start = end = 0
        for point in members:
            if point.count > limit:
                raise ValueError(
                    f"point {point.name!r} ({point.mark}) spans {point.count} {table} addresses, more "
                    f"than the {limit} one request may read; raise comms limits or split the point"
                )
            new_end = max(end, point.end)
            if current and point.address - end <= comms.max_gap_registers and new_end - start <= limit:
                current.append(point)
                end = new_end
                continue
            if current:
                blocks.append(ReadBlock(table, start, end - start, tuple(current)))
            current, start, end = [point], point.address, point.end
        if current:
            blocks.append(ReadBlock(table, start, end - start, tuple(current)))
    return blocks


def split_block(block: ReadBlock, words: Sequence[int]) -> dict[str, list[int]]:
    """The words (or bits) of each point of `block`, from the words one read of the block returned."""
    if len(words) < block.count:
        raise ValueError(
            f"read of {block.count} {block.table} addresses from {block.start} returned {len(words)} values"
        )
    return {
        point.name: list(words[point.address - block.start : point.end - block.start])
        for point in block.points
    }
