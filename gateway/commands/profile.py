"""`socgw profile validate PATH...` and `socgw profile schema`: the integrators' profile tools."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

from gateway.commands.profile_check import add_profile_check
from gateway.diagnostics import Mark, Problem
from gateway.profiles.loader import load_profile, validate_profile
from gateway.profiles.schema import schema_text


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("profile", help="check vendor profiles, print their JSON Schema")
    commands = parser.add_subparsers(dest="profile_command", metavar="ACTION", required=True)
    validate = commands.add_parser(
        "validate",
        help="check profile files (a directory: every *.yaml below it)",
        description="Check vendor profiles. Prints file:line:column: problem for each problem found; "
        "exit status 0 when every file is valid, 1 otherwise.",
    )
    validate.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="profile file or directory")
    validate.set_defaults(handler=run_validate)
    schema = commands.add_parser(
        "schema",
        help="print the JSON Schema of profile files (for editors)",
        description="Print the JSON Schema (draft 2020-12) of profile files on standard output.",
    )
    schema.set_defaults(handler=run_schema)
    add_profile_check(commands)


def _profile_files(paths: list[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(path.rglob("*.yaml"))
        else:
            yield path


def run_validate(args: argparse.Namespace) -> int:
    files = list(_profile_files(args.paths))
    problems: list[Problem] = []
    owners: dict[str, Path] = {}  # profile key -> first file declaring it
    for file in files:
        found = validate_profile(file)
        problems.extend(found)
        if found:
            continue
        profile = load_profile(file)
        if profile.key in owners:
            problems.append(
                Problem(
                    Mark(str(file), 1, 1),
                    f"{profile.key} is also defined by {owners[profile.key]}: give one of them another model",
                )
            )
            continue
        owners[profile.key] = file
        points = sum(len(variant.points) for variant in profile.variants)
        print(
            f"{file}: ok ({profile.key} {profile.profile_version}, "
            f"{len(profile.variants)} variant(s), {points} point(s))"
        )
    for problem in problems:
        print(problem)
    if not files:
        print("no profile files found under " + ", ".join(map(str, args.paths)), file=sys.stderr)
        return 1
    if problems:
        print(
            f"{len(problems)} problem(s) in {len({p.mark.file for p in problems})} file(s)", file=sys.stderr
        )
        return 1
    return 0


def run_schema(args: argparse.Namespace) -> int:
    sys.stdout.write(schema_text())
    return 0
