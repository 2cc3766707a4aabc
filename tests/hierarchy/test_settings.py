"""`site.role` and a head's `hierarchy` section: each mistake reported at its place with its remedy."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import ConfigError, load_config
from gateway.hierarchy.settings import parse_head
from tests.conftest import PROFILES

HEAD = """\
site: {name: plant, role: head}
nodes: []
hierarchy:
  brokers: [{host: 10.0.0.2, port: 1883}, {host: 10.0.0.3}]
  group_id: plant
  host_id: head
  workers: [north, south]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_head(load_config(path, [PROFILES]))
    return [str(problem) for problem in caught.value.problems]


def test_a_head_section_is_read_with_its_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, HEAD), [PROFILES])
    settings = parse_head(config)
    assert config.role == "head"
    assert settings.workers == ("north", "south")
    assert [(b.host, b.port) for b in settings.brokers] == [("10.0.0.2", 1883), ("10.0.0.3", 1883)]
    assert (settings.group_id, settings.host_id, settings.mqtt.client_id) == ("plant", "head", "socgw-head")
    assert load_config(write(tmp_path, "nodes: []\n"), [PROFILES]).role == "standalone"


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (HEAD.replace("role: head", "role: boss"), ":1:", "`role` must be one of"),
        (HEAD.replace("nodes: []", "nodes:\n  - {id: p1, host: 10.0.0.9, profile: microstore/mp2000}"),
         ":3:", "a head has no nodes of its own"),
        (HEAD.replace("role: head", "role: worker"), ":3:", "`hierarchy` is a head's section"),
        ("site: {role: worker}\nnodes: []\n", ":1:", "add a `northbound.mqtt` section"),
        ("site: {role: head}\nnodes: []\n", ":1:", "a head needs a `hierarchy` section"),
    ],
)  # fmt: skip
def test_role_mistakes_are_reported_at_their_line(
    tmp_path: Path, text: str, where: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), [PROFILES])
    assert any(where in str(p) and message in str(p) for p in caught.value.problems), caught.value.problems


@pytest.mark.parametrize(
    ("change", "where", "message"),
    [
        (("workers: [north, south]", "workers: [north, north]"), ":7:", "worker `north` is listed twice"),
        (("workers: [north, south]", "workers: []"), ":7:", "must list the workers' edge node ids"),
        (("workers: [north, south]", "workers: [no/rth]"), ":7:", "must be an edge node id"),
        (("host_id: head", "host_id: a+b"), ":6:", "`host_id` 'a+b' must hold only"),
        (("group_id: plant", "group: plant"), ":5:", "unknown key"),
    ],
)
def test_hierarchy_mistakes_are_reported_at_their_line(
    tmp_path: Path, change: tuple[str, str], where: str, message: str
) -> None:
    found = problems(write(tmp_path, HEAD.replace(*change)))
    assert any(where in p and message in p for p in found), found


def test_validate_names_the_role_and_the_clusters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, HEAD)
    assert main(["validate", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    assert "role head" in out and "clusters (workers): north, south" in out
    assert main(["validate", "-c", str(write(tmp_path, HEAD.replace("[north, south]", "[]")))]) == 2
    assert "must list the workers" in capsys.readouterr().err


PACKS = HEAD.replace(
    "  workers: [north, south]\n",
    "  workers:\n    - {id: north, packs: [north-01, north-02]}\n    - {id: south, packs: [south-01]}\n",
)


def test_the_packs_listed_per_worker_are_what_the_head_serves_upstream_in_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = load_config(write(tmp_path, PACKS), [PROFILES])
    assert parse_head(config).workers == ("north", "south")
    assert [(pack.node_id, pack.origin) for pack in config.served_packs] == [
        ("north-01", "worker north"), ("north-02", "worker north"), ("south-01", "worker south"),
    ]  # fmt: skip
    assert str(config.served_packs[2].mark).endswith(":9:27")
    assert main(["validate", "-c", str(tmp_path / "gateway.yaml")]) == 0
    assert "north: 2 pack(s) served upstream: north-01, north-02" in capsys.readouterr().out
    plain = load_config(write(tmp_path, HEAD), [PROFILES])
    assert plain.served_packs == ()  # the head serves its clusters' aggregates only


@pytest.mark.parametrize(
    ("change", "where", "message"),
    [
        (("[south-01]", "[north-02]"), ":9:", "pack `north-02` is listed under worker `north` already"),
        (("{id: south, packs: [south-01]}", "south"), ":9:", "list the `packs` of every worker or of none"),
        (("[south-01]", "[south/01]"), ":9:", "must be its node id"),
        (("{id: south, packs: [south-01]}", "{packs: [south-01]}"), ":9:", "needs its `id`"),
        (("[south-01]", "south-01"), ":9:", "`packs` must list its node ids"),
        (("{id: south,", "{id: south, pack: 1,"), ":9:", "unknown key"),
    ],
)
def test_pack_list_mistakes_are_reported_at_their_line(
    tmp_path: Path, change: tuple[str, str], where: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, PACKS.replace(*change)), [PROFILES])
    found = [str(problem) for problem in caught.value.problems]
    assert any(where in p and message in p for p in found), found


@pytest.mark.parametrize("section", ["", "hierarchy: 3\n"])
def test_a_head_without_a_hierarchy_mapping_gets_one_problem_not_two(tmp_path: Path, section: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, "site: {role: head}\nnodes: []\n" + section), [PROFILES])
    assert len(caught.value.problems) == 1, caught.value.problems
