"""YAML with source marks: every mapping key, value and list item remembers its file:line:column.

Profiles, the site config and the point mappings are written by people, so every error has to point
at the exact spot. PyYAML's safe loader drops the marks once it has built Python objects; this loader
keeps them beside the data: mappings come back as `MarkedMap` (a dict) and lists as `MarkedList`
(a list), scalars as plain Python values.

Two YAML 1.1 traps are closed on purpose, matching YAML 1.2 (and therefore the editors' YAML
language server): only `true`/`false` are booleans (so a label written `off` or `no` stays a
string), and integers with leading zeros are decimal (so a Modicon coil `00017` is 17, not octal 15).
Duplicate keys are errors instead of silently keeping the last one.

A file is input from anyone who can write it, so loading is bounded: its size (`MAX_FILE_BYTES`), its
nesting (`MAX_DEPTH`, before Python's recursion limit is near), the values its aliases expand to
(`MAX_VALUES`: a dozen lines of nested aliases, "billion laughs", would otherwise expand to billions),
and the digits of an integer (`MAX_INTEGER_DIGITS`). Past a bound the file is refused with the mark of
the place that crossed it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from gateway.diagnostics.problems import Mark

__all__ = ["MarkedList", "MarkedMap", "YamlError", "load_yaml", "load_yaml_file"]


class YamlError(Exception):
    """The text is not valid YAML (or has a duplicate key); `mark` says where."""

    def __init__(self, mark: Mark, problem: str) -> None:
        super().__init__(f"{mark}: {problem}")
        self.mark = mark
        self.problem = problem


class MarkedMap(dict[Any, Any]):
    """A mapping that knows where it, each of its keys and each of its values were written."""

    def __init__(self, mark: Mark) -> None:
        super().__init__()
        self.mark = mark
        self.key_marks: dict[Any, Mark] = {}
        self.value_marks: dict[Any, Mark] = {}

    def key_mark(self, key: Any) -> Mark:
        """Where `key` was written (the mapping's own mark if the key is absent)."""
        return self.key_marks.get(key, self.mark)

    def value_mark(self, key: Any) -> Mark:
        """Where the value of `key` was written (the mapping's own mark if the key is absent)."""
        return self.value_marks.get(key, self.mark)


class MarkedList(list[Any]):
    """A list that knows where it and each of its items were written."""

    def __init__(self, mark: Mark) -> None:
        super().__init__()
        self.mark = mark
        self.item_marks: list[Mark] = []

    def item_mark(self, index: int) -> Mark:
        return self.item_marks[index] if 0 <= index < len(self.item_marks) else self.mark


MAX_FILE_BYTES = 1 << 20  # the largest shipped file is ~40 KB
MAX_DEPTH = 64  # the deepest shipped file nests 6 levels
MAX_VALUES = 100_000  # after alias expansion; the largest shipped file has ~3 000
MAX_INTEGER_DIGITS = 40  # every integer socgw reads fits in 64 bits (20 digits)

_BOOL_TAG = "tag:yaml.org,2002:bool"
_INT_TAG = "tag:yaml.org,2002:int"
_YAML12_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_YAML12_INT = re.compile(r"^(?:[-+]?[0-9][0-9_]*|0x[0-9a-fA-F_]+|0o[0-7_]+|0b[01_]+)$")


class _MarkedLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans and integers, building marked containers."""

    file_name = "<string>"

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._values = 0  # values composed so far, each alias counted as all it expands to
        self._expanded: dict[int, int] = {}  # id(node) -> the values it expands to

    def mark_of(self, node: Node) -> Mark:
        return Mark(self.file_name, node.start_mark.line + 1, node.start_mark.column + 1)

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        """PyYAML's composer, counting nesting depth and alias expansion as it goes."""
        event = self.peek_event()  # type: ignore[no-untyped-call]  # untyped in the stubs
        where = Mark(self.file_name, event.start_mark.line + 1, event.start_mark.column + 1)
        if isinstance(event, AliasEvent):
            target = self.anchors.get(event.anchor) if event.anchor is not None else None
            self._count(self._expanded.get(id(target), 1), where)
            return super().compose_node(parent, index)
        if self._depth >= MAX_DEPTH:
            raise YamlError(where, f"nested more than {MAX_DEPTH} levels deep: flatten the document")
        self._depth += 1
        before = self._values
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._count(1, where)
        self._expanded[id(node)] = self._values - before
        return node

    def _count(self, values: int, where: Mark) -> None:
        self._values += values
        if self._values > MAX_VALUES:
            raise YamlError(
                where,
                f"the document expands to more than {MAX_VALUES} values (aliases of aliases?): "
                "write the values out, or use fewer nested aliases",
            )


# Rebuild the implicit resolvers without the YAML 1.1 bool and int rules, then add the 1.2 ones.
_MarkedLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL_TAG, _INT_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_MarkedLoader.add_implicit_resolver(_BOOL_TAG, _YAML12_BOOL, list("tTfF"))
_MarkedLoader.add_implicit_resolver(_INT_TAG, _YAML12_INT, list("-+0123456789"))


def _construct_int(loader: _MarkedLoader, node: Node) -> int:
    assert isinstance(node, ScalarNode)
    text = str(node.value).replace("_", "")
    if len(text) > MAX_INTEGER_DIGITS:
        raise YamlError(
            loader.mark_of(node),
            f"an integer of {len(text)} digits is larger than any value socgw reads: check the number",
        )
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-")
    for prefix, base in (("0x", 16), ("0o", 8), ("0b", 2)):
        if digits.startswith(prefix):
            return sign * int(digits[2:], base)
    return sign * int(digits, 10)


def _construct_map(loader: _MarkedLoader, node: Node) -> MarkedMap:
    assert isinstance(node, MappingNode)
    own_pairs = [pair for pair in node.value if pair[0].tag != "tag:yaml.org,2002:merge"]
    loader.flatten_mapping(node)  # resolves `<<: *anchor` merges; merged pairs come first
    merged_count = len(node.value) - len(own_pairs)
    result = MarkedMap(loader.mark_of(node))
    written_here: dict[Any, Mark] = {}  # keys written in this mapping itself (merged keys may be overridden)
    for index, (key_node, value_node) in enumerate(node.value):
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise YamlError(loader.mark_of(key_node), "a mapping key must be a plain value") from None
        if index >= merged_count:
            if key in written_here:
                raise YamlError(
                    loader.mark_of(key_node),
                    f"duplicate key {key!r} (first written at line {written_here[key].line}): keep only one",
                )
            written_here[key] = loader.mark_of(key_node)
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_marks[key] = loader.mark_of(key_node)
        result.value_marks[key] = loader.mark_of(value_node)
    return result


def _construct_list(loader: _MarkedLoader, node: Node) -> MarkedList:
    assert isinstance(node, SequenceNode)
    result = MarkedList(loader.mark_of(node))
    for item in node.value:
        result.append(loader.construct_object(item, deep=True))
        result.item_marks.append(loader.mark_of(item))
    return result


_MarkedLoader.add_constructor(_INT_TAG, _construct_int)
_MarkedLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_MarkedLoader.add_constructor("tag:yaml.org,2002:seq", _construct_list)


def load_yaml(text: str, file: str = "<string>") -> Any:
    """Parse one YAML document; mappings and lists come back marked. Raises `YamlError`."""
    try:
        loader = _MarkedLoader(text)  # refuses unprintable characters (NUL, control codes) here
    except yaml.reader.ReaderError as exc:
        raise YamlError(_position_mark(text, file, exc.position), _reader_problem(exc)) from None
    loader.file_name = file
    try:
        return loader.get_single_data()
    except yaml.reader.ReaderError as exc:
        raise YamlError(_position_mark(text, file, exc.position), _reader_problem(exc)) from None
    except yaml.MarkedYAMLError as exc:
        where = exc.problem_mark or exc.context_mark
        mark = Mark(file, where.line + 1, where.column + 1) if where else Mark(file, 1, 1)
        problem = " ".join(part for part in (exc.context, exc.problem) if part)
        raise YamlError(mark, f"YAML syntax error: {problem or exc}") from None
    except yaml.YAMLError as exc:
        raise YamlError(Mark(file, 1, 1), f"YAML error: {exc}") from None
    finally:
        loader.dispose()


def _position_mark(text: str, file: str, position: int) -> Mark:
    before = text[:position]
    return Mark(file, before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1)


def _reader_problem(error: yaml.reader.ReaderError) -> str:
    character = error.character if isinstance(error.character, int) else ord(error.character)
    return f"character U+{character:04X} is not allowed in YAML text: is this the right file? save it as text"


def load_yaml_file(path: str | Path) -> Any:
    """Read and parse a YAML file (UTF-8). Marks name the file as `path` was given."""
    file = str(path)
    try:
        with Path(path).open("rb") as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise YamlError(
                Mark(file, 1, 1), f"larger than {MAX_FILE_BYTES // 1024} KiB: is this the right file?"
            )
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlError(Mark(file, 1, 1), f"not UTF-8 text ({exc.reason}): save the file as UTF-8") from None
    except OSError as exc:
        raise YamlError(Mark(file, 1, 1), f"cannot read the file: {exc.strerror or exc}") from None
    return load_yaml(text, file)
