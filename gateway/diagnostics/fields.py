"""One checker for the fields of every file people write, driven by field tables.

A field table maps each key of a section to a `Field`: what the value is (a whole number or a number
in a range, text, true/false, one of some words, a semantic version, a nested section or list), a
description (for the docs and the JSON Schema, see `schema.py`) and the remedy a message ends with.
Loaders read values through `Checker.value`, which collects every problem in one style:

    file:line:column: `key` must be <what it is>, not <what was written>: <remedy>

and `Checker.known_keys` reports unknown keys with a "did you mean" hint.
"""

from __future__ import annotations

import difflib
import enum
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from gateway.diagnostics.marked_yaml import MarkedList, MarkedMap
from gateway.diagnostics.problems import Mark, Problem

# MAJOR.MINOR.PATCH without leading zeros (semver.org): "01.0.0" is refused everywhere.
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
SEMVER_RULE = 'a semantic version MAJOR.MINOR.PATCH in quotes, e.g. "1.2.0"'


class Kind(enum.Enum):
    WHOLE = "whole"
    NUMBER = "number"
    TEXT = "text"
    FLAG = "flag"
    CHOICE = "choice"
    VERSION = "version"
    SECTION = "section"  # a mapping: the keys of `fields`, or any keys whose values are `values`
    LIST = "list"  # items are `values`
    ANY = "any"  # checked by the loader itself; `schema` describes it


@dataclass(frozen=True)
class Field:
    """What one key of a file holds. Build them with the functions below."""

    description: str
    kind: Kind = Kind.ANY
    low: float | None = None  # inclusive bounds
    high: float | None = None
    above: float | None = None  # exclusive lower bound
    unit: str = ""  # said after a range: "10..10000 ms"
    finite: bool = True
    choices: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = None  # text must match it whole
    rule: str = ""  # replaces the generated "what it must be"
    remedy: str = ""
    fields: Mapping[str, Field] | None = None
    values: Field | None = None
    required: tuple[str, ...] = ()  # keys a section must have (for the schema)
    nullable: bool = False  # null means "not set"
    schema: Mapping[str, Any] = field(default_factory=dict)  # extra JSON Schema keywords

    def must_be(self) -> str:
        """What a value must be, as a message says it: "a whole number 1..65535"."""
        if self.rule:
            return self.rule
        if self.kind in (Kind.WHOLE, Kind.NUMBER):
            return ("a whole number" if self.kind is Kind.WHOLE else "a number") + self.range_text()
        return {
            Kind.TEXT: "text",
            Kind.FLAG: "true or false",
            Kind.CHOICE: "one of " + ", ".join(self.choices),
            Kind.VERSION: SEMVER_RULE,
            Kind.SECTION: "a mapping of `key: value` lines",
            Kind.LIST: "a list",
            Kind.ANY: "something else",
        }[self.kind]

    def range_text(self) -> str:
        """The bounds as messages say them: " 1..65535", " > 0 W"; "" without bounds."""
        if self.low is not None and self.high is not None:
            text = f" {_number(self.low)}..{_number(self.high)}"
        elif self.above is not None:
            text = f" > {_number(self.above)}"
        elif self.low is not None:
            text = f" >= {_number(self.low)}"
        elif self.high is not None:
            text = f" <= {_number(self.high)}"
        else:
            return ""
        return f"{text} {self.unit}" if self.unit else text

    def accepts(self, value: Any) -> bool:
        """Whether `value` is what this field holds (sections and lists: only their type)."""
        if self.kind in (Kind.WHOLE, Kind.NUMBER):
            return (is_whole(value) if self.kind is Kind.WHOLE else is_number(value)) and self._in_range(
                value
            )
        if self.kind is Kind.TEXT:
            if self.pattern is not None:
                return isinstance(value, str) and self.pattern.fullmatch(value) is not None
            return isinstance(value, str) and bool(value.strip())
        if self.kind is Kind.FLAG:
            return isinstance(value, bool)
        if self.kind is Kind.CHOICE:
            return isinstance(value, str) and value in self.choices
        if self.kind is Kind.VERSION:
            return isinstance(value, str) and SEMVER.match(value) is not None
        if self.kind is Kind.SECTION:
            return isinstance(value, MarkedMap)
        if self.kind is Kind.LIST:
            return isinstance(value, MarkedList)
        return True

    def _in_range(self, value: float) -> bool:
        if self.finite and not math.isfinite(value):
            return False
        return (
            (self.low is None or value >= self.low)
            and (self.high is None or value <= self.high)
            and (self.above is None or value > self.above)
        )


def whole(description: str, low: int | None = None, high: int | None = None, **more: Any) -> Field:
    return Field(description, Kind.WHOLE, low=low, high=high, **more)


def number(description: str, low: float | None = None, high: float | None = None, **more: Any) -> Field:
    return Field(description, Kind.NUMBER, low=low, high=high, **more)


def text(description: str, **more: Any) -> Field:
    return Field(description, Kind.TEXT, **more)


def flag(description: str, **more: Any) -> Field:
    return Field(description, Kind.FLAG, **more)


def choice(description: str, choices: Iterable[str], **more: Any) -> Field:
    return Field(description, Kind.CHOICE, choices=tuple(choices), **more)


def version(description: str, **more: Any) -> Field:
    return Field(description, Kind.VERSION, **more)


def section(description: str, fields: Mapping[str, Field], **more: Any) -> Field:
    """A mapping with the keys of `fields` (no others)."""
    return Field(description, Kind.SECTION, fields=MappingProxyType(dict(fields)), **more)


def mapping_of(description: str, values: Field, **more: Any) -> Field:
    """A mapping of names the file chooses to `values`."""
    return Field(description, Kind.SECTION, values=values, **more)


def list_of(description: str, values: Field, **more: Any) -> Field:
    return Field(description, Kind.LIST, values=values, **more)


def anything(description: str, **schema: Any) -> Field:
    """Checked by the loader itself (it depends on other keys); `schema` says what the JSON Schema knows."""
    return Field(description, Kind.ANY, schema=schema)


def table(fields: Mapping[str, Field]) -> Mapping[str, Field]:
    """A read-only field table."""
    return MappingProxyType(dict(fields))


# --- Values ------------------------------------------------------------------------------------------


def is_whole(value: Any) -> bool:
    """An integer, and not a bool (YAML's true is no count)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """An integer or a float, and not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def describe(value: Any) -> str:
    """What was written, for "not X" in a message."""
    if isinstance(value, MarkedMap):
        return "a mapping"
    if isinstance(value, MarkedList):
        return "a list"
    if value is None:
        return "nothing"
    return repr(value)


def did_you_mean(word: str, choices: Iterable[Any]) -> str:
    """A hint: a choice extending the word (soc -> soc_pct), else the most similar one; "" if none."""
    options = [str(option) for option in choices]
    match = [option for option in options if word and option.startswith(word)][:1]
    match = match or difflib.get_close_matches(word, options, n=1, cutoff=0.5)
    return f" (did you mean `{match[0]}`?)" if match else ""


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


# --- The checker -------------------------------------------------------------------------------------


class Checker:
    """Collects the problems of one file while a loader reads it."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def problem(self, mark: Mark, message: str) -> None:
        self.problems.append(Problem(mark, message))

    def known_keys(self, mapping: MarkedMap, fields: Iterable[str], where: str) -> None:
        """Report every key of `mapping` that is not one of `fields`, with a hint."""
        allowed = list(fields)
        for key in mapping:
            if key in allowed:
                continue
            hint = did_you_mean(str(key), allowed)
            if mapping[key] is None or " " in str(key):  # `{description: a, b}` splits at the comma
                hint += "; a comma inside { } starts a new key: put text with commas in quotes"
            self.problem(
                mapping.key_mark(key),
                f"unknown key `{key}` in {where}{hint}; valid keys: {', '.join(allowed)}",
            )

    def mapping(self, value: Any, mark: Mark, what: str) -> MarkedMap | None:
        """`value` if it is a mapping; else report that `what` must be one."""
        if isinstance(value, MarkedMap):
            return value
        self.problem(mark, f"{what} must be a mapping of `key: value` lines, not {describe(value)}")
        return None

    def section(self, parent: MarkedMap, key: str, fields: Mapping[str, Field]) -> MarkedMap:
        """The mapping under `key` with its unknown keys reported; empty when absent or not a mapping."""
        value = parent.get(key)
        if value is None:
            return MarkedMap(parent.key_mark(key))
        if not isinstance(value, MarkedMap):
            self.problem(
                parent.value_mark(key), f"`{key}` must be a mapping of settings, not {describe(value)}"
            )
            return MarkedMap(parent.value_mark(key))
        self.known_keys(value, fields, f"`{key}`")
        return value

    def value(
        self, mapping: MarkedMap, key: str, field: Field, default: Any = None, *, where: str = ""
    ) -> Any:
        """The value of `key` as `field` says (int, float, str, bool), or `default` when it is absent
        (and, with `where`, reported as missing) or wrong (reported)."""
        if key not in mapping or (mapping[key] is None and field.nullable):
            if where:
                example = f"<{field.range_text().strip()}>" if field.range_text() else "..."
                self.problem(mapping.mark, f"{where} has no `{key}`: add `{key}: {example}`")
            return default
        value = mapping[key]
        if not field.accepts(value):
            hint = did_you_mean(str(value), field.choices) if field.kind is Kind.CHOICE else ""
            remedy = f": {field.remedy}" if field.remedy else ""
            self.problem(
                mapping.value_mark(key),
                f"`{key}` must be {field.must_be()}, not {describe(value)}{hint}{remedy}",
            )
            return default
        if field.kind is Kind.WHOLE:
            return int(value)
        if field.kind is Kind.NUMBER:
            return float(value)
        return value
