"""Valid files, mutated at random, load or fail with located problems: never any other exception.

Hypothesis takes the shipped example config, a shipped profile and both shipped maps, and replaces,
deletes, repeats or inserts lines (with the tokens that broke loaders before: aliases and anchors,
NaN and infinity, huge integers, NUL, unbalanced brackets). Every outcome must be the loaded object or
a `ProblemsError` whose problems all name the mutated file with a line and column.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.config import load_config
from gateway.diagnostics import ProblemsError
from gateway.mapping.dnp3 import load_dnp3_map
from gateway.mapping.iec61850 import load_map
from gateway.profiles.loader import load_profile
from tests.conftest import PROFILES, REPO

NASTY = [
    ".nan",
    "-.inf",
    "9" * 60,
    "*a",
    "&a [*a, *a]",
    "<<: *a",
    "[",
    "{",
    "}",
    "'",
    '"',
    ":",
    "- -",
    "\x00",
    "\t",
    "~",
    "true",
    "0x",
    "1e999",
    "!!binary AAAA",
    "? [a]",
]

SOURCES: dict[str, tuple[Path, Callable[[Path], Any]]] = {
    "config": (REPO / "examples" / "gateway.yaml", load_config),
    "profile": (PROFILES / "microstore" / "mp2000.yaml", load_profile),
    "dnp3-map": (REPO / "mappings" / "dnp3" / "default.yaml", load_dnp3_map),
    "iec61850-map": (REPO / "mappings" / "iec61850" / "default.yaml", load_map),
}


@st.composite
def mutated(draw: st.DrawFn, text: str) -> str:
    lines = text.split("\n")
    for _ in range(draw(st.integers(1, 4))):
        index = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["replace", "delete", "repeat", "insert", "splice"]))
        token = draw(st.sampled_from(NASTY) | st.text(max_size=12))
        if action == "replace":
            lines[index] = token
        elif action == "delete" and len(lines) > 1:
            del lines[index]
        elif action == "repeat":
            lines.insert(index, lines[index])
        elif action == "insert":
            lines.insert(index, token)
        else:  # a token inside a line, where values and keys are
            line = lines[index]
            cut = draw(st.integers(0, len(line)))
            lines[index] = line[:cut] + token + line[cut:]
    return "\n".join(lines)


@pytest.mark.parametrize("kind", sorted(SOURCES))
def test_mutated_files_load_or_report_located_problems(kind: str, tmp_path: Path) -> None:
    source, load = SOURCES[kind]

    @settings(max_examples=60, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(text=mutated(source.read_text()))
    def check(text: str) -> None:
        path = tmp_path / source.name  # the same name: a profile's key and a config's relative paths hold
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            load(path)
        except ProblemsError as error:
            assert error.problems
            for problem in error.problems:
                assert Path(problem.mark.file).name == source.name, problem
                assert problem.mark.line >= 1 and problem.mark.column >= 1, problem

    check()
