"""The fleet as a terminal table (shared by `socgw demo` and `socgw status`), from a status document."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

BAR_WIDTH = 20
MODE_STYLES = {
    "active": "green",
    "at_reserve": "yellow",
    "bypassed_thermal": "red",
    "offline": "bright_black",
    "maintenance": "cyan",
    "calibrating": "magenta",
}


def _soc_bar(soc_pct: float | None) -> Text:
    if soc_pct is None:
        return Text("-" * BAR_WIDTH, style="bright_black")
    filled = round(max(0.0, min(100.0, soc_pct)) / 100.0 * BAR_WIDTH)
    style = "green" if soc_pct >= 40 else "yellow" if soc_pct >= 15 else "red"
    return Text("█" * filled, style=style) + Text("░" * (BAR_WIDTH - filled), style="bright_black")


def _number(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    # Floating-point noise such as -3e-12 W must not print as "-0".
    return format(round(value, 6) + 0.0, fmt)


def status_renderable(document: Mapping[str, Any]) -> Group:
    table = Table(title=f"socgw · site {document.get('site', '?')}", expand=False)
    for column, justify in (
        ("node", "left"),
        ("SOC", "left"),
        ("%", "right"),
        ("power W", "right"),
        ("setpoint W", "right"),
        ("temp °C", "right"),
        ("mode", "left"),
        ("quality", "left"),
        ("alarms / error", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for node in document.get("nodes", []):
        mode = node.get("mode") or "-"
        problems = ", ".join([*node.get("alarms", []), *([node["error"]] if node.get("error") else [])])
        table.add_row(
            node["id"],
            _soc_bar(node.get("soc_pct")),
            _number(node.get("soc_pct"), ".1f"),
            _number(node.get("power_w"), ".0f"),
            _number(node.get("setpoint_w"), ".0f"),
            _number(node.get("temp_c"), ".1f"),
            Text(mode, style=MODE_STYLES.get(mode, "")),
            node.get("quality", "-"),
            problems,
        )
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
    adapters = document.get("adapters")
    if adapters:
        summary.append("\n")
        summary.append("adapters ", style="bold")
        summary.append("   ".join(_adapter_text(adapter) for adapter in adapters))
    return Group(table, summary)


def _adapter_text(adapter: Mapping[str, Any]) -> str:
    """`dnp3 running (pid 4242, 1 restart, last: killed by SIGKILL)`: one adapter process."""
    restarts = adapter.get("restarts", 0)
    details = [f"pid {adapter.get('pid') or '-'}", f"{restarts} restart{'' if restarts == 1 else 's'}"]
    if adapter.get("last_exit"):
        details.append(f"last: {adapter['last_exit']}")
    return f"{adapter.get('section', '?')} {adapter.get('state', '?')} ({', '.join(details)})"


def status_table_text(document: Mapping[str, Any]) -> str:
    console = Console(width=140, record=True, color_system=None)
    with console.capture() as capture:
        console.print(status_renderable(document))
    return capture.get()
