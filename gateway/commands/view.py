"""The fleet as a terminal table (shared by `socgw demo` and `socgw status`), from a status document."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

BAR_WIDTH = 20
NARROW_BAR_WIDTH = 8
WIDE_COLUMNS = 120  # below this the table abbreviates headers, modes and quality; node ids stay whole
MODE_STYLES = {
    "active": "green",
    "at_reserve": "yellow",
    "bypassed_thermal": "red",
    "offline": "bright_black",
    "maintenance": "cyan",
    "calibrating": "magenta",
}
# Short forms for narrow terminals; README's command table explains them.
MODE_ABBREVIATIONS = {
    "active": "act",
    "at_reserve": "rsv",
    "bypassed_thermal": "hot",
    "offline": "off",
    "maintenance": "mnt",
    "calibrating": "cal",
}


def _soc_bar(soc_pct: float | None, width: int) -> Text:
    if soc_pct is None:
        return Text("-" * width, style="bright_black")
    filled = round(max(0.0, min(100.0, soc_pct)) / 100.0 * width)
    style = "green" if soc_pct >= 40 else "yellow" if soc_pct >= 15 else "red"
    return Text("█" * filled, style=style) + Text("░" * (width - filled), style="bright_black")


def _number(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    # Floating-point noise such as -3e-12 W must not print as "-0".
    return format(round(value, 6) + 0.0, fmt)


def rounded(value: Any, digits: int = 3) -> Any:
    """`value` (a JSON document) with every float rounded to `digits` decimals, so that -3.6e-12 W prints
    as 0.0 and 29.400000000000002 as 29.4 (no quantity the gateway shows is finer than a milliunit)."""
    if isinstance(value, float):
        return round(value, digits) + 0.0  # + 0.0 turns -0.0 into 0.0
    if isinstance(value, Mapping):
        return {key: rounded(item, digits) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(item, digits) for item in value]
    return value


def status_renderable(document: Mapping[str, Any], width: int = WIDE_COLUMNS) -> Group:
    """The fleet table and summary for a terminal `width` columns wide. Narrow terminals get short headers,
    mode abbreviations, a shorter SOC bar and each node's alarms on a line under the table; no cell is
    ever cut (node ids, numbers and modes stay on one line)."""
    narrow = width < WIDE_COLUMNS
    notes: list[Text] = []
    table = _node_table(f"socgw · site {document.get('site', '?')}", document.get("nodes", []), narrow, notes)
    packs = document.get("packs")
    tables = [table]
    if packs:  # a head: its clusters above, every pack behind its workers below
        tables.append(_node_table("packs behind the workers", packs, narrow, notes, by_worker=True))
    fleet = document.get("fleet", {})
    timing = document.get("timing", {})
    total = timing.get("steps_ms", {}).get("total", {})
    summary = Text.assemble(
        ("fleet SOC ", "bold"),
        f"{_number(fleet.get('mean_soc_pct'), '.1f')} %   ",
        ("spread ", "bold"),
        f"{_number(fleet.get('soc_spread_pct'), '.1f')} %   ",
        ("request ", "bold"),
        f"{_number(document.get('request_w'), '.0f')} W   ",
        ("served ", "bold"),
        f"{_number(document.get('served_w'), '.0f')} W   ",
        ("unserved ", "bold"),
        f"{_number(document.get('unserved_w'), '.0f')} W\n",
        ("cycle ", "bold"),
        f"#{document.get('cycle', 0)}  p50 {_number(total.get('p50'), '.1f')} ms  "
        f"p99 {_number(total.get('p99'), '.1f')} ms  overruns {timing.get('overruns', 0)}   ",
        ("alarms ", "bold"),
        ", ".join(document.get("alarms", [])) or "none",
    )
    logging = document.get("logging")
    if logging is not None:  # `socgw status` (the demo shows no log)
        summary.append_text(
            Text.assemble("   ", ("log lines suppressed ", "bold"), str(logging.get("suppressed_lines", 0)))
        )
    adapters = document.get("adapters")
    if adapters:
        summary.append("\n")
        summary.append("adapters ", style="bold")
        summary.append("   ".join(_adapter_text(adapter) for adapter in adapters))
        for adapter in adapters:
            if adapter.get("front_door"):
                summary.append("\n")
                summary.append(f"front door {adapter.get('section', '?')} ", style="bold")
                summary.append(
                    ", ".join(f"{name} {count}" for name, count in sorted(adapter["front_door"].items()))
                )
    pollers = document.get("pollers")
    if pollers:
        summary.append("\n")
        summary.append("pollers ", style="bold")
        summary.append("   ".join(_poller_text(poller) for poller in pollers))
    return Group(*tables, *notes, summary)


def _node_table(
    title: str, rows: list[Mapping[str, Any]], narrow: bool, notes: list[Text], *, by_worker: bool = False
) -> Table:
    """One row per node (or pack, with its worker); narrow: each row's alarms go to `notes`."""
    table = Table(
        title=title,
        expand=False,
        # Narrow: no rules, one space between columns (the header row stands out in bold).
        box=None if narrow else box.HEAVY_HEAD,
        pad_edge=not narrow,
        collapse_padding=narrow,
        header_style="bold",
    )
    headers = (
        ("node", "SOC", "%", "W", "set W", "°C", "mode", "quality")
        if narrow
        else ("node", "SOC", "%", "power W", "setpoint W", "temp °C", "mode", "quality", "alarms / error")
    )
    justified = ("left", "left", "right", "right", "right", "right", "left", "left", "left")
    if by_worker:
        table.add_column("worker", no_wrap=True)
    for header, justify in zip(headers, justified, strict=False):  # narrow: no alarms column
        table.add_column(header, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for node in rows:
        mode = node.get("mode") or "-"
        problems = ", ".join([*node.get("alarms", []), *([node["error"]] if node.get("error") else [])])
        cells: list[str | Text] = [node.get("worker", "-")] if by_worker else []
        cells += [
            node["id"],
            _soc_bar(node.get("soc_pct"), NARROW_BAR_WIDTH if narrow else BAR_WIDTH),
            _number(node.get("soc_pct"), ".1f"),
            _number(node.get("power_w"), ".0f"),
            _number(node.get("setpoint_w"), ".0f"),
            _number(node.get("temp_c"), ".1f"),
            Text(MODE_ABBREVIATIONS.get(mode, mode) if narrow else mode, style=MODE_STYLES.get(mode, "")),
            node.get("quality", "-"),
        ]
        if not narrow:
            cells.append(problems)
        elif problems:
            notes.append(Text.assemble((node["id"], "bold"), f": {problems}"))
        table.add_row(*cells)
    return table


def _adapter_text(adapter: Mapping[str, Any]) -> str:
    """`dnp3 running (pid 4242, 1 restart, last: killed by SIGKILL)`: one adapter process."""
    restarts = adapter.get("restarts", 0)
    details = [f"pid {adapter.get('pid') or '-'}", f"{restarts} restart{'' if restarts == 1 else 's'}"]
    if adapter.get("last_exit"):
        details.append(f"last: {adapter['last_exit']}")
    return f"{adapter.get('section', '?')} {adapter.get('state', '?')} ({', '.join(details)})"


def _poller_text(poller: Mapping[str, Any]) -> str:
    """`poller 2 running (pid 4243, 250 nodes, 1 restart, 3 missed cycles, last: killed by SIGKILL)`."""
    restarts, missed = poller.get("restarts", 0), poller.get("missed_cycles", 0)
    details = [
        f"pid {poller.get('pid') or '-'}",
        f"{poller.get('nodes', 0)} nodes",
        f"{restarts} restart{'' if restarts == 1 else 's'}",
        f"{missed} missed cycle{'' if missed == 1 else 's'}",
    ]
    if poller.get("last_exit"):
        details.append(f"last: {poller['last_exit']}")
    return f"poller {poller.get('poller', '?')} {poller.get('state', '?')} ({', '.join(details)})"


def status_table_text(document: Mapping[str, Any], width: int = 140) -> str:
    console = Console(width=width, record=True, color_system=None)
    with console.capture() as capture:
        console.print(status_renderable(document, width))
    return capture.get()
