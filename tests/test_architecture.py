"""Imports run one way: pure core -> descriptions (maps, site config) -> adapters -> engine -> commands.

The table below is the "may import" column of docs/architecture.md, checked over the source tree: every
`gateway` import (top-level, lazy or for type checking alike) must be allowed for its package, a new
package must be added to the table (with its place in the docs), and no two modules import each other at
module level, directly or round a longer cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

from tests.conftest import REPO

CORE = frozenset(
    {
        "gateway",  # the package root: __version__ only
        "gateway.diagnostics",
        "gateway.fleet",
        "gateway.balancer",
        "gateway.site_command",
        "gateway.snapshot",
        "gateway.timing",
        "gateway.profiles",
    }
)

# Utilities any layer above the core may use: rate-limited logging, default file locations, what the
# supervisors of child processes share.
UTILITIES = frozenset({"gateway.logbook", "gateway.paths", "gateway.supervision"})

# Adapters read the fleet, never the register maps: what they show comes through `gateway.mapping`.
ADAPTER_BASE = (CORE - {"gateway.profiles"}) | {"gateway.config", "gateway.mapping"} | UTILITIES

# package -> the packages it may import (besides itself)
MAY_IMPORT: Mapping[str, frozenset[str]] = {
    "gateway": frozenset(),
    "gateway.diagnostics": frozenset(),
    "gateway.fleet": frozenset({"gateway.profiles"}),  # the vocabulary says which point feeds which field
    "gateway.timing": frozenset(),
    "gateway.balancer": frozenset({"gateway.fleet"}),
    "gateway.site_command": frozenset({"gateway.balancer", "gateway.fleet"}),
    "gateway.snapshot": frozenset({"gateway.balancer", "gateway.fleet", "gateway.site_command"}),
    "gateway.profiles": frozenset({"gateway.diagnostics"}),
    "gateway.mapping": frozenset(
        {
            "gateway.diagnostics",
            "gateway.fleet",
            "gateway.balancer",
            "gateway.site_command",
            "gateway.snapshot",
        }
    ),
    "gateway.config": frozenset(
        {"gateway.diagnostics", "gateway.profiles", "gateway.balancer", "gateway.paths"}
    ),
    "gateway.paths": frozenset(),
    "gateway.logbook": frozenset(),
    "gateway.supervision": frozenset({"gateway.logbook"}),
    "gateway.status": frozenset({"gateway"} | UTILITIES),
    "gateway.balancing_log": frozenset(),
    "gateway.sdnotify": frozenset(),
    "gateway.southbound": frozenset(
        {"gateway.diagnostics", "gateway.profiles", "gateway.fleet", "gateway.config"} | UTILITIES
    ),
    # The polling processes: a fieldbus over children that each run the southbound's own.
    "gateway.southbound.pollers": frozenset(
        {
            "gateway.diagnostics",
            "gateway.profiles",
            "gateway.fleet",
            "gateway.timing",
            "gateway.config",
            "gateway.southbound",
        }
        | UTILITIES
    ),
    "gateway.sim": frozenset({"gateway.diagnostics", "gateway.profiles"}),
    "gateway.northbound": ADAPTER_BASE,
    "gateway.northbound.dnp3": ADAPTER_BASE | {"gateway.northbound"},
    "gateway.northbound.iec61850": ADAPTER_BASE | {"gateway.northbound"},
    "gateway.northbound.web": ADAPTER_BASE | {"gateway.northbound", "gateway.northbound.frontdoor"},
    # The front door of the listening stacks: admission, TLS, the splice (in each adapter process).
    "gateway.northbound.frontdoor": ADAPTER_BASE | {"gateway.northbound"},
    # The adapter processes: generic, they reach a protocol package only through the registry.
    "gateway.northbound.process": ADAPTER_BASE | {"gateway.northbound", "gateway.northbound.frontdoor"},
    # The head's side of Sparkplug B: a fieldbus (southbound's protocol) over the MQTT package's payload
    # schema and settings; nothing of its edge node's client.
    "gateway.hierarchy": ADAPTER_BASE | {"gateway.southbound", "gateway.northbound"},
    "gateway.engine": CORE
    | {
        "gateway.config",
        "gateway.mapping",
        "gateway.southbound",
        "gateway.balancing_log",
        "gateway.sdnotify",
        *UTILITIES,
    },
    "gateway.commands": frozenset(
        {
            *CORE,
            "gateway.config",
            "gateway.mapping",
            "gateway.status",
            *UTILITIES,
            "gateway.southbound",
            "gateway.southbound.pollers",
            "gateway.sim",
            "gateway.northbound",
            "gateway.northbound.dnp3",
            "gateway.northbound.iec61850",
            "gateway.northbound.web",
            "gateway.northbound.process",
            "gateway.engine",
            "gateway.hierarchy",
        }
    ),
    "gateway.cli": frozenset({"gateway", "gateway.commands"}),
}


def packages_of(module: str) -> list[str]:
    """The table's packages a module belongs to (the root `gateway` holds only its own __init__)."""
    return [
        name for name in MAY_IMPORT if module == name or (name != "gateway" and module.startswith(name + "."))
    ]


def package_of(module: str) -> str:
    """The table's package for a module: `gateway.northbound.dnp3.points` -> `gateway.northbound.dnp3`."""
    return max(packages_of(module), key=len)


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(tree: ast.Module, *, top_level_only: bool) -> Iterator[tuple[int, str]]:
    """(line, module) of every `gateway` import; with top_level_only, those run when the module loads."""
    nodes: list[ast.stmt] | list[ast.AST] = list(tree.body) if top_level_only else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if top_level_only:  # `from gateway.x import y` may load the submodule y
                names += [f"{node.module}.{alias.name}" for alias in node.names]
            for name in names:
                if name == "gateway" or name.startswith("gateway."):
                    yield node.lineno, name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("gateway"):
                    yield node.lineno, alias.name


def violations(sources: Mapping[str, str]) -> list[str]:
    """Every import against the table, as `module:line: imports X (package P may import ...)`."""
    found: list[str] = []
    for module, text in sorted(sources.items()):
        if not packages_of(module):
            found.append(
                f"{module}: not in the table: add its package to MAY_IMPORT and docs/architecture.md"
            )
            continue
        package = package_of(module)
        allowed = MAY_IMPORT[package] | {package}
        for line, target in imports(ast.parse(text), top_level_only=False):
            target_package = package_of(target) if packages_of(target) else target
            if target_package not in allowed:
                found.append(
                    f"{module}:{line}: imports {target} ({package} may import {', '.join(sorted(allowed))})"
                )
    return found


def cycles(sources: Mapping[str, str]) -> list[list[str]]:
    """Module-level import cycles (a module importing a package counts as importing its __init__)."""
    graph: dict[str, set[str]] = {module: set() for module in sources}
    for module, text in sources.items():
        for _line, target in imports(ast.parse(text), top_level_only=True):
            if target in sources and target != module:
                graph[module].add(target)
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                found.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return found


def gateway_sources() -> dict[str, str]:
    root = REPO
    return {module_name(path, root): path.read_text() for path in sorted((root / "gateway").rglob("*.py"))}


def test_every_import_runs_with_the_grain() -> None:
    assert violations(gateway_sources()) == []


def test_no_module_level_import_cycles() -> None:
    assert cycles(gateway_sources()) == []


def test_the_check_catches_an_import_against_the_grain() -> None:
    sources = {
        "gateway.fleet": "from gateway.engine import Engine\n",
        "gateway.mapping.sources": "def f() -> None:\n    from gateway.northbound.dnp3 import points\n",
        "gateway.northbound.dnp3.points": "import gateway.northbound.iec61850.model\n",
        "gateway.surprise": "",
    }
    found = violations(sources)
    assert [entry.split(":")[0] for entry in found] == [
        "gateway.fleet",
        "gateway.mapping.sources",
        "gateway.northbound.dnp3.points",
        "gateway.surprise",
    ]
    assert "imports gateway.northbound.dnp3" in found[1]


def test_the_check_catches_a_cycle() -> None:
    sources = {
        "gateway.a": "from gateway.b import x\n",
        "gateway.b": "from gateway.c import y\n",
        "gateway.c": "import gateway.a\n",
        "gateway.d": "from gateway.a import z\n",
    }
    assert cycles(sources) == [["gateway.a", "gateway.b", "gateway.c", "gateway.a"]]
