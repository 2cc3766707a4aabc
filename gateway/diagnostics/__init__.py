"""Diagnostics for every file a person writes (profiles, the site config, DNP3 and IEC 61850 maps,
simulator scenarios): where a problem is, what it is, and how to fix it. Pure: imports nothing else
of ours.

    problems.py     Mark (file:line:column), Problem, ProblemsError (each loader's error subclasses it)
    marked_yaml.py  the YAML loader that keeps a Mark for every key, value and list item (YAML 1.2
                    booleans and integers, duplicate keys refused)
    fields.py       field tables (key -> Field: what it holds, its description, the remedy) and the one
                    Checker that reads values through them, with "did you mean" hints; SEMVER
    lookup.py       named files by folder: `default` -> <dir>/<folder>/default.yaml in a search path
    schema.py       JSON Schemas made from the same field tables
"""

from gateway.diagnostics.fields import (
    SEMVER,
    Checker,
    Field,
    Kind,
    describe,
    did_you_mean,
    is_number,
    is_whole,
)
from gateway.diagnostics.lookup import MAPPING_PATH, PROFILE_PATH, SearchPath, find_named_file, named_files
from gateway.diagnostics.marked_yaml import MarkedList, MarkedMap, YamlError, load_yaml, load_yaml_file
from gateway.diagnostics.problems import NO_MARK, Mark, Problem, ProblemsError

__all__ = [
    "MAPPING_PATH",
    "NO_MARK",
    "PROFILE_PATH",
    "SEMVER",
    "Checker",
    "Field",
    "Kind",
    "Mark",
    "MarkedList",
    "MarkedMap",
    "Problem",
    "ProblemsError",
    "SearchPath",
    "YamlError",
    "describe",
    "did_you_mean",
    "find_named_file",
    "is_number",
    "is_whole",
    "load_yaml",
    "load_yaml_file",
    "named_files",
]
