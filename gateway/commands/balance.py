"""`socgw balance`: a dry run of the balancer for a fleet given on the command line or in a YAML file.

It calls the same `dispatch` the gateway runs every cycle, with the gateway's default parameters (reserve
10 %, ceiling 95 %) unless told otherwise, so what it prints is what a fresh gateway would do. The
textbook example "80 % and 40 % packs at 900 W → 600 W and 300 W" assumes no reserve:

    socgw balance --soc 80,40 --capacity-wh 1000,1000 --request-w 900 --reserve-pct 0

Limits not given are unlimited here (the gateway itself gives 0 W to a node that reports no limit).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from gateway.balancer import BalancerParams, ChargeSource, Dispatch, SiteCommand, dispatch
from gateway.fleet import FleetState, NodeState

EXAMPLES = """\
examples:
  socgw balance --soc 80,40 --capacity-wh 1000,1000 --request-w 900 --reserve-pct 0
      600 W and 300 W: discharge shares follow the energy above the reserve (here 0 %)
  socgw balance --soc 80,40 --capacity-wh 1000 --request-w 900
      630 W and 270 W with the default 10 % reserve (one value applies to every node)
  socgw balance --file fleet.yaml --json

fleet.yaml:
  request_w: 900            # optional, --request-w wins
  reserve_pct: 10           # optional, as are ceiling_pct and charge_source; flags win
  nodes:
    - id: pack1             # optional (default pack1, pack2, ...)
      soc_pct: 80
      capacity_wh: 1000
      soh_pct: 100          # optional; also charge_limit_w, discharge_limit_w, temp_c
"""

# Per-node fields: (command-line flag, YAML key, required).
_NODE_FIELDS = (
    ("--soc", "soc_pct", True),
    ("--capacity-wh", "capacity_wh", True),
    ("--soh", "soh_pct", False),
    ("--charge-limit-w", "charge_limit_w", False),
    ("--discharge-limit-w", "discharge_limit_w", False),
    ("--temp-c", "temp_c", False),
)
_FILE_SETTINGS = ("request_w", "reserve_pct", "ceiling_pct", "charge_source")


class BalanceInputError(ValueError):
    """The fleet or the request given to `socgw balance` is not usable; the message says what to fix."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "balance",
        help="dry-run the SOC balancer for a fleet given on the command line or in a file",
        description=(
            "Compute the setpoints the balancer gives each pack for one request (+ = discharge). "
            "Lists take one value per pack, or a single value for all packs."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--soc", type=_number_list, metavar="PCT,...", help="state of charge of each pack (%%)"
    )
    source.add_argument(
        "--file", type=Path, metavar="FLEET.yaml", help="read the fleet (and settings) from YAML"
    )
    parser.add_argument("--capacity-wh", type=_number_list, metavar="WH,...", help="nameplate capacity (Wh)")
    parser.add_argument(
        "--soh", type=_number_list, metavar="PCT,...", help="state of health (%%, default 100)"
    )
    parser.add_argument("--discharge-limit-w", type=_number_list, metavar="W,...", help="default: unlimited")
    parser.add_argument("--charge-limit-w", type=_number_list, metavar="W,...", help="default: unlimited")
    parser.add_argument(
        "--temp-c", type=_number_list, metavar="C,...", help="pack temperature (thermal derating and bypass)"
    )
    parser.add_argument(
        "--ids", type=_text_list, metavar="ID,...", help="pack names (default pack1, pack2, ...)"
    )
    parser.add_argument(
        "--request-w", type=_number, metavar="W", help="site request, + = discharge, - = charge"
    )
    parser.add_argument("--reserve-pct", type=_number, metavar="PCT", help="default 10 (the gateway's)")
    parser.add_argument("--ceiling-pct", type=_number, metavar="PCT", help="default 95 (the gateway's)")
    parser.add_argument("--charge-source", choices=[s.value for s in ChargeSource], help="default pv")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        problem = _Problem.build(args)
    except BalanceInputError as error:
        print(f"socgw balance: error: {error}", file=sys.stderr)
        return 2
    result = dispatch(problem.fleet, problem.command, problem.params, None, 0.0)
    if args.json:
        print(json.dumps(_as_json(problem, result), indent=2))
    else:
        _print_table(problem, result)
    return 0


@dataclass(frozen=True)
class _Problem:
    fleet: FleetState
    command: SiteCommand
    params: BalancerParams

    @classmethod
    def build(cls, args: argparse.Namespace) -> _Problem:
        if args.file is not None:
            for flag, _, _ in _NODE_FIELDS[1:]:
                if getattr(args, _dest(flag)) is not None:
                    raise BalanceInputError(f"{flag} cannot be combined with --file; put it in the file")
            if args.ids is not None:
                raise BalanceInputError(
                    "--ids cannot be combined with --file; give each node an id in the file"
                )
            rows, settings = _read_file(args.file)
        else:
            rows, settings = _rows_from_flags(args), {}
        for name in _FILE_SETTINGS:
            flag_value = getattr(args, name)
            if flag_value is not None:
                settings[name] = flag_value
        if "request_w" not in settings:
            raise BalanceInputError("give the site request with --request-w W (+ = discharge, - = charge)")
        try:
            params = BalancerParams(
                setpoint_deadband_w=0.0,
                default_charge_limit_w=math.inf,
                default_discharge_limit_w=math.inf,
                **{k: float(settings[k]) for k in ("reserve_pct", "ceiling_pct") if k in settings},
            )
            command = SiteCommand(
                float(settings["request_w"]), ChargeSource(settings.get("charge_source", ChargeSource.PV))
            )
            fleet = FleetState(tuple(_node(node_id, values) for node_id, values in rows), 0.0)
        except (ValueError, TypeError) as error:
            raise BalanceInputError(str(error)) from error
        return cls(fleet, command, params)


def _node(node_id: str, values: Mapping[str, float]) -> NodeState:
    return NodeState(
        node_id,
        soc_pct=values["soc_pct"],
        capacity_wh=values["capacity_wh"],
        soh_pct=values.get("soh_pct"),
        charge_limit_w=values.get("charge_limit_w"),
        discharge_limit_w=values.get("discharge_limit_w"),
        temp_c=values.get("temp_c"),
    )


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _number_list(text: str) -> list[float]:
    return [_number(part.strip()) for part in text.split(",")]


def _text_list(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"{text!r} has an empty name")
    return names


def _rows_from_flags(args: argparse.Namespace) -> list[tuple[str, dict[str, float]]]:
    count = len(args.soc)
    columns: dict[str, list[float]] = {}
    for flag, key, required in _NODE_FIELDS:
        values: list[float] | None = getattr(args, _dest(flag))
        if values is None:
            if required:
                raise BalanceInputError(f"{flag} is required with --soc (one value per pack, or one for all)")
            continue
        if len(values) == 1:
            values = values * count
        if len(values) != count:
            raise BalanceInputError(
                f"{flag} has {len(values)} values but --soc has {count}; give one value per pack, "
                "or a single value for all packs"
            )
        columns[key] = values
    ids: list[str] = args.ids if args.ids is not None else [f"pack{i + 1}" for i in range(count)]
    if len(ids) != count:
        raise BalanceInputError(f"--ids has {len(ids)} names but --soc has {count} values; give one per pack")
    return [(node_id, {key: column[i] for key, column in columns.items()}) for i, node_id in enumerate(ids)]


def _read_file(path: Path) -> tuple[list[tuple[str, dict[str, float]]], dict[str, Any]]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise BalanceInputError(f"{path}: cannot read: {error.strerror}") from error
    except yaml.YAMLError as error:
        raise BalanceInputError(f"{path}: not valid YAML: {error}") from error
    if (
        not isinstance(document, Mapping)
        or not isinstance(document.get("nodes"), list)
        or not document["nodes"]
    ):
        raise BalanceInputError(
            f"{path}: expected a mapping with a non-empty list 'nodes' (see socgw balance -h)"
        )
    unknown = sorted(set(document) - {"nodes", *_FILE_SETTINGS})
    if unknown:
        raise BalanceInputError(
            f"{path}: unknown keys {unknown}; allowed: nodes, {', '.join(_FILE_SETTINGS)}"
        )
    allowed = {key for _, key, _ in _NODE_FIELDS}
    rows: list[tuple[str, dict[str, float]]] = []
    for index, entry in enumerate(document["nodes"]):
        where = f"{path}: nodes[{index}]"
        if not isinstance(entry, Mapping):
            raise BalanceInputError(f"{where}: expected a mapping of {sorted(allowed | {'id'})}")
        extra = sorted(set(entry) - allowed - {"id"})
        if extra:
            raise BalanceInputError(
                f"{where}: unknown keys {extra}; allowed: id, {', '.join(sorted(allowed))}"
            )
        values: dict[str, float] = {}
        for _, key, required in _NODE_FIELDS:
            if key not in entry:
                if required:
                    raise BalanceInputError(f"{where}: missing {key}")
                continue
            value = entry[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise BalanceInputError(f"{where}.{key}: expected a finite number, got {value!r}")
            values[key] = float(value)
        rows.append((str(entry.get("id", f"pack{index + 1}")), values))
    settings = {key: document[key] for key in _FILE_SETTINGS if key in document}
    for key in ("request_w", "reserve_pct", "ceiling_pct"):
        value = settings.get(key, 0.0)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise BalanceInputError(f"{path}: {key}: expected a finite number, got {value!r}")
    if settings.get("charge_source", "pv") not in {source.value for source in ChargeSource}:
        raise BalanceInputError(
            f"{path}: charge_source: expected one of {[s.value for s in ChargeSource]}, "
            f"got {settings['charge_source']!r}"
        )
    return rows, settings


def _as_json(problem: _Problem, result: Dispatch) -> dict[str, Any]:
    return {
        "request_w": result.requested_w,
        "served_w": round(result.served_w, 3),
        "unserved_w": round(result.unserved_w, 3),
        "alarms": list(result.alarms),
        "params": {
            "reserve_pct": problem.params.reserve_pct,
            "ceiling_pct": problem.params.ceiling_pct,
            "charge_source": problem.command.charge_source.value,
        },
        "nodes": [
            {
                "node_id": out.node_id,
                "soc_pct": node.soc_pct,
                "usable_energy_wh": node.usable_energy_wh,
                "setpoint_w": round(out.setpoint_w, 3),
                "mode": out.mode.value,
                "alarms": list(out.alarms),
            }
            for node, out in zip(problem.fleet.nodes, result.nodes, strict=True)
        ],
    }


def _print_table(problem: _Problem, result: Dispatch) -> None:
    table = Table(
        title=(
            f"request {result.requested_w:g} W, reserve {problem.params.reserve_pct:g} %, "
            f"ceiling {problem.params.ceiling_pct:g} %, charge source {problem.command.charge_source}"
        )
    )
    for name in ("node", "SOC %", "usable Wh", "setpoint W", "mode", "alarms"):
        text = name in ("node", "mode", "alarms")
        table.add_column(name, justify="left" if text else "right", overflow="fold", no_wrap=name != "alarms")
    for node, out in zip(problem.fleet.nodes, result.nodes, strict=True):
        table.add_row(
            out.node_id,
            _fmt(node.soc_pct),
            _fmt(node.usable_energy_wh),
            _fmt(out.setpoint_w),
            out.mode.value,
            ", ".join(out.alarms),
        )
    console = Console(highlight=False)
    console.print(table)
    console.print(
        f"served {_fmt(result.served_w)} W, unserved {_fmt(result.unserved_w)} W"
        + (f", alarms: {', '.join(result.alarms)}" if result.alarms else "")
    )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}".removesuffix(".0")
