"""The broken-file corpus (tests/corpus/): every file gives a file:line error and a non-zero exit
within 2 s and 200 MB, with no traceback and no hang.

Configs run through `socgw validate -c`, profiles through `socgw profile validate`, maps through
`socgw validate -c` of a one-node config that names the broken map. Huge and deep documents are made
here at run time instead of being committed. All cases run in one driver process that forks a child per
case (tests/corpus_driver.py), so the whole corpus takes seconds.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.wire  # real stacks, sockets on loopback or child processes

CORPUS = REPO / "tests" / "corpus"
TIME_LIMIT_S = 2.0
MEMORY_LIMIT_BYTES = 200 * 1024 * 1024
LOCATION = re.compile(r"^(?P<file>[^\n]+?):(?P<line>\d+):(?P<column>\d+): \S", re.MULTILINE)
NODE = "  - { id: pack-01, host: 127.0.0.1, port: 15020, unit: 1, profile: microstore/mp2000 }\n"
HEADER = "site:\n  name: corpus\n  cycle_ms: 100\nnodes:\n" + NODE


GENERATED: Mapping[
    str, Callable[[], str]
] = {  # too large to commit: a 3 MB value, 3000-deep block nesting, 20 000-deep flow nesting
    "huge-string": lambda: HEADER.replace("name: corpus", "name: " + "x" * 3_000_000),
    "deep-block": lambda: HEADER + "x_deep:\n" + "".join(" " * depth + "- \n" for depth in range(1, 3000)),
    "deep-flow-lists": lambda: HEADER + "x_deep: " + "[" * 20_000 + "]" * 20_000 + "\n",
    "deep-flow-maps": lambda: HEADER + "x_deep: " + "{a: " * 20_000 + "1" + "}" * 20_000 + "\n",
}


def cases(scratch: Path, *, write: bool) -> Iterator[tuple[str, Path, list[str]]]:
    """(case name, the broken file, socgw arguments); with write, the generated files are written."""
    for path in sorted((CORPUS / "config").glob("*.yaml")):
        yield f"config/{path.stem}", path, ["validate", "-c", str(path)]
    for name, make in GENERATED.items():
        path = scratch / f"{name}.yaml"
        if write:
            path.write_text(make())
        yield f"config/{name}", path, ["validate", "-c", str(path)]
    for path in sorted((CORPUS / "profile").glob("*.yaml")):
        yield f"profile/{path.stem}", path, ["profile", "validate", str(path)]
    for path in sorted((CORPUS / "map").glob("*/*.yaml")):
        protocol = path.parent.name
        config = scratch / f"map-{protocol}-{path.stem}.yaml"
        if write:
            config.write_text(HEADER + f"northbound:\n  {protocol}:\n    map: {path}\n")
        yield f"map/{protocol}/{path.stem}", path, ["validate", "-c", str(config)]


CASE_NAMES = [name for name, _, _ in cases(Path("unwritten"), write=False)]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict[str, Any]]]:
    scratch = tmp_path_factory.mktemp("corpus")
    listed = list(cases(scratch, write=True))
    (scratch / "cases.json").write_text(
        json.dumps([{"name": name, "argv": argv} for name, _, argv in listed])
    )
    subprocess.run(
        [sys.executable, "-m", "tests.corpus_driver", str(scratch / "cases.json"), str(scratch / "out.json")],
        cwd=REPO,
        check=True,
        timeout=len(listed) * (TIME_LIMIT_S + 1) + 30,
    )
    outcomes = json.loads((scratch / "out.json").read_text())
    return {name: (path, outcome) for (name, path, _), outcome in zip(listed, outcomes, strict=True)}


def test_the_corpus_has_at_least_100_files() -> None:
    assert len(CASE_NAMES) >= 100


@pytest.mark.parametrize("name", CASE_NAMES)
def test_broken_file_gives_a_located_error(
    name: str, results: dict[str, tuple[Path, dict[str, Any]]]
) -> None:
    path, outcome = results[name]
    output = outcome["output"]
    assert not outcome["hung"], f"{name}: still running after {TIME_LIMIT_S} s"
    assert "Traceback" not in output, output
    assert outcome["exit"] != 0, output
    assert outcome["seconds"] < TIME_LIMIT_S
    assert outcome["max_rss_bytes"] < MEMORY_LIMIT_BYTES
    located = [match for match in LOCATION.finditer(output) if Path(match["file"]).name == path.name]
    assert located, f"{name}: no {path.name}:line:column in:\n{output}"
