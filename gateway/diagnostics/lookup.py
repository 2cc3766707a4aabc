"""Finding the files a config names: profiles (`vendor/model`) and maps (`default`, or a path).

A name is looked up as `<dir>/<folder>/<name>.yaml` in a search path, first match wins: the directories
of an environment variable (colon-separated), /etc/socgw/<kind> (local additions and overrides), the
source tree's <kind>/ and /usr/share/socgw/<kind> (the packaged ones).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.diagnostics.fields import did_you_mean

SOURCE_TREE = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class SearchPath:
    variable: str  # e.g. SOCGW_MAPPING_PATH
    kind: str  # the folder under /etc/socgw, the source tree and /usr/share/socgw

    def dirs(self) -> list[Path]:
        listed = [Path(entry) for entry in os.environ.get(self.variable, "").split(os.pathsep) if entry]
        return [
            *listed,
            Path("/etc/socgw") / self.kind,
            SOURCE_TREE / self.kind,
            Path("/usr/share/socgw") / self.kind,
        ]


PROFILE_PATH = SearchPath("SOCGW_PROFILE_PATH", "profiles")
MAPPING_PATH = SearchPath("SOCGW_MAPPING_PATH", "mappings")


def named_files(dirs: Sequence[Path], folder: str = "") -> dict[str, Path]:
    """Every `<dir>/<folder>/**/*.yaml` by name (its path below the folder, without .yaml); the first
    directory holding a name wins."""
    files: dict[str, Path] = {}
    for directory in dirs:
        root = directory / folder
        if root.is_dir():
            for file in sorted(root.rglob("*.yaml")):
                files.setdefault(file.relative_to(root).with_suffix("").as_posix(), file)
    return files


def is_path(reference: str) -> bool:
    """Whether a config's reference is a file path (a '/' or a .yaml ending) rather than a name."""
    return "/" in reference or reference.endswith((".yaml", ".yml"))


def find_named_file(reference: str, relative_to: Path, folder: str, what: str, dirs: Sequence[Path]) -> Path:
    """The file a config names: a path (relative to the config's directory) or a name looked up as
    `<dir>/<folder>/<name>.yaml`. Raises FileNotFoundError saying where it looked and what exists."""
    if is_path(reference):
        path = Path(reference)
        path = path if path.is_absolute() else relative_to / path
        if not path.is_file():
            raise FileNotFoundError(f"{what} file {path} does not exist")
        return path
    known = named_files(dirs, folder)
    if reference in known:
        return known[reference]
    where = ", ".join(str(directory / folder) for directory in dirs)
    raise FileNotFoundError(
        f"no {what} named `{reference}`{did_you_mean(reference, known)} in {where}; "
        f"known: {', '.join(sorted(known)) or 'none'}"
    )
