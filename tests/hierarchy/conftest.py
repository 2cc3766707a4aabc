"""The hierarchy tests' network namespaces, removed whatever the test's outcome."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.hierarchy.netns import Network


@pytest.fixture
def network() -> Iterator[Network]:
    net = Network()
    try:
        yield net
    finally:
        net.close()
