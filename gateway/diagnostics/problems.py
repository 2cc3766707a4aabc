"""Where something was written (`Mark`) and what is wrong there (`Problem`, `ProblemsError`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Mark:
    """A position in a source file: 1-based line and column. Errors and logs quote it."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


NO_MARK = Mark("<built-in>", 0, 0)  # things made in code rather than read from a file


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a file people write (profile, site config, map): where, and how to fix it."""

    mark: Mark
    message: str

    def __str__(self) -> str:
        return f"{self.mark}: {self.message}"


class ProblemsError(Exception):
    """A file could not be used; `problems` lists every problem found, one per line in the message."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))
