"""Fill the man page template with the sub-commands of `socgw`, read from its own argument parser.

Usage: python manpage.py TEMPLATE VERSION > socgw.8   (run by debian/rules with the built environment)

The page's date is the package's (SOURCE_DATE_EPOCH, set by dpkg-buildpackage), so builds are
reproducible. Written by hand rather than with a man page generator: Debian 12 packages none that
renders sub-commands, and the page's prose sections are hand-written roff anyway.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from gateway.cli import build_parser


def roff(text: str) -> str:
    """Escape running text for roff: backslashes, hyphens, and control characters at line starts."""
    escaped = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in escaped.splitlines())


def sub_commands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of the parser's sub-commands, in `--help` order."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            return [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]
    return []


def option_heading(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"\\fI{roff(str(action.metavar or action.dest))}\\fR"
    names = ", ".join(f"\\fB{roff(name)}\\fR" for name in action.option_strings)
    if action.nargs == 0:
        return names
    metavar = action.metavar or action.dest.upper()
    shown = " ".join(metavar) if isinstance(metavar, tuple) else metavar
    return f"{names} \\fI{roff(shown)}\\fR"


def command_sections(name: str, summary: str, parser: argparse.ArgumentParser) -> list[str]:
    """The section of `socgw NAME`, then those of its own sub-commands (`socgw profile check`, ...)."""
    formatter = parser._get_formatter()
    lines = [f'.SS "socgw {name}"', roff(summary)]
    if parser.description and parser.description != summary:
        lines += [".PP", roff(parser.description)]
    for action in parser._actions:
        if (
            isinstance(action, argparse._HelpAction | argparse._SubParsersAction)
            or action.help == argparse.SUPPRESS
        ):
            continue
        lines += [".TP", option_heading(action), roff(formatter._expand_help(action) if action.help else "")]
    sections = ["\n".join(lines)]
    for sub_name, sub_summary, sub_parser in sub_commands(parser):
        sections += command_sections(f"{name} {sub_name}", sub_summary, sub_parser)
    return sections


def main(argv: list[str]) -> int:
    template_path, version = Path(argv[1]), argv[2]
    epoch = int(os.environ["SOURCE_DATE_EPOCH"])  # set by dpkg-buildpackage from debian/changelog
    date = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d")
    sections = [text for command in sub_commands(build_parser()) for text in command_sections(*command)]
    if not sections:
        raise SystemExit("manpage.py: the socgw parser has no sub-commands")
    page = template_path.read_text(encoding="utf-8")
    page = (
        page.replace("@DATE@", date).replace("@VERSION@", version).replace("@COMMANDS@", "\n".join(sections))
    )
    sys.stdout.write(page)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
