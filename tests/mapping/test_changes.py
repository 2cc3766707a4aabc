"""The change tracker's companion: which nodes need reading at all (pure)."""

from __future__ import annotations

from gateway.mapping.changes import NodeInputs


def test_a_node_is_read_again_only_when_its_inputs_or_the_sites_context_change() -> None:
    seen = NodeInputs()
    seen.context(("params", "command"))
    assert seen.changed("pack-01", ("state", "decision"))  # never read
    seen.record("pack-01", ("state", "decision"))
    assert not seen.changed("pack-01", ("state", "decision"))
    assert seen.changed("pack-01", ("state", "another decision"))
    assert seen.changed("pack-02", ("state", "decision"))  # another node
    seen.context(("params", "command"))  # the same context: nothing to read again
    assert not seen.changed("pack-01", ("state", "decision"))
    seen.context(("other params", "command"))
    assert seen.changed("pack-01", ("state", "decision"))
