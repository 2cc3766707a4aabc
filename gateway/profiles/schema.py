"""The JSON Schema (draft 2020-12) of profile files, for editors' completion and checks.

It is generated from the tables the loader itself uses (keys, types, tables, vocabulary, limits),
so the two cannot drift apart. The loader remains the authority: it also checks what a schema
cannot express (overlapping registers, scale registers, firmware ranges, Modicon ranges...).
`socgw profile schema` prints it; `profiles/profile.schema.json` is that output, committed.
"""

from __future__ import annotations

from typing import Any

from gateway.diagnostics import SEMVER
from gateway.diagnostics.schema import DRAFT, properties, schema_json
from gateway.profiles.codec import FIRMWARE_FORMATS, REGISTER_WIDTH
from gateway.profiles.loader import (
    ADDRESS_NOTATIONS,
    COMMS_FIELDS,
    ENTRY_FIELDS,
    IDENTIFY_FIELDS,
    MODICON_RANGES,
    TOP_LEVEL_FIELDS,
    VARIANT_FIELDS,
)
from gateway.profiles.model import Access, DataType, Table, WordOrder
from gateway.profiles.vocabulary import (
    CANONICAL_STATES,
    SCALE_FACTOR_NAME,
    VENDOR_EXTRA_NAME,
    VOCABULARY,
)

__all__ = ["profile_schema", "schema_text"]

_SLUG_PATTERN = "^[a-z0-9][a-z0-9._-]*$"
_VERSION = r"v?\d+(\.\d+){0,2}"
_RANGE_PATTERN = rf"^\s*(\*|(>=\s*{_VERSION}|<\s*{_VERSION})(\s*,\s*(>=\s*{_VERSION}|<\s*{_VERSION}))?)\s*$"
_HIGHEST_ADDRESS = max(last for ranges in MODICON_RANGES.values() for _, last, _ in ranges)


def _entry_schema() -> dict[str, Any]:
    fields: dict[str, dict[str, Any]] = {
        "table": {"enum": [t.value for t in Table]},
        "address": {"type": "integer", "minimum": 0, "maximum": _HIGHEST_ADDRESS},
        "type": {"enum": [t.value for t in DataType]},
        "length": {"type": "integer", "minimum": 1, "maximum": 125},
        "word_order": {"enum": [w.value for w in WordOrder]},
        "scale": {"type": "number", "not": {"const": 0}},
        "offset": {"type": "number"},
        "scale_register": {"type": "string", "pattern": SCALE_FACTOR_NAME.pattern},
        "sentinel": {"type": "integer", "minimum": -(2**63), "maximum": 2**64 - 1},
        "unit": {"type": "string"},
        "access": {"enum": [a.value for a in Access]},
        "min": {"type": "number"},
        "max": {"type": "number"},
        "labels": {
            "type": "object",
            "propertyNames": {"pattern": "^[0-9]+$"},
            "additionalProperties": {"type": "string", "minLength": 1},
        },
        "deadband": {"type": "number", "minimum": 0},
        "description": {"type": "string"},
    }
    assert fields.keys() == ENTRY_FIELDS.keys()
    return {
        "type": "object",
        "description": "One register entry: where a point sits on the wire and how to read it.",
        "additionalProperties": False,
        "required": ["address", "type"],
        "properties": {key: {"description": ENTRY_FIELDS[key], **value} for key, value in fields.items()},
        "allOf": [
            {"if": _type_is("enum"), "then": {"required": ["labels"]}},
            {"if": _type_is("str"), "then": {"required": ["length"]}},
            {"not": {"required": ["scale", "scale_register"]}},
        ],
    }


def _type_is(name: str) -> dict[str, Any]:
    return {"required": ["type"], "properties": {"type": {"const": name}}}


def _registers_schema() -> dict[str, Any]:
    numeric = [t.value for t in REGISTER_WIDTH]
    points: dict[str, Any] = {}
    for name, spec in VOCABULARY.items():
        tags = [f"unit {spec.unit}" if spec.unit else "", "required" if spec.required else ""]
        extra = "; ".join(tag for tag in tags if tag)
        constraints: dict[str, Any] = {"type": {"enum": list(spec.kinds or numeric)}}
        if spec.unit:
            constraints["unit"] = {"const": spec.unit}
        if name == "state":
            constraints["labels"] = {"additionalProperties": {"enum": list(CANONICAL_STATES)}}
        points[name] = {
            "$ref": "#/$defs/entry",
            "description": f"{spec.description}{f' ({extra})' if extra else ''}",
            "properties": constraints,
        }
    return {
        "type": "object",
        "description": "Point name -> register entry: a vocabulary name, x_<name> or <name>_sf.",
        "properties": points,
        "patternProperties": {
            VENDOR_EXTRA_NAME.pattern: {"$ref": "#/$defs/entry"},
            SCALE_FACTOR_NAME.pattern: {"$ref": "#/$defs/entry"},
        },
        "additionalProperties": False,
    }


def _comms_schema() -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": properties(COMMS_FIELDS)}


def profile_schema() -> dict[str, Any]:
    """The JSON Schema of a profile file, as a JSON-ready dict."""
    top: dict[str, dict[str, Any]] = {
        "vendor": {"type": "string", "pattern": _SLUG_PATTERN},
        "model": {"type": "string", "pattern": _SLUG_PATTERN},
        "profile_version": {"type": "string", "pattern": SEMVER.pattern},
        "description": {"type": "string"},
        "address_notation": {"enum": list(ADDRESS_NOTATIONS), "default": ADDRESS_NOTATIONS[0]},
        "comms": _comms_schema(),
        "identify": {
            "type": "object",
            "additionalProperties": False,
            "required": ["registers"],
            "properties": {
                "registers": {
                    "description": IDENTIFY_FIELDS["registers"],
                    "$ref": "#/$defs/registers",
                    "required": ["firmware"],
                },
                "markers": {
                    "description": IDENTIFY_FIELDS["markers"],
                    "type": "object",
                    "additionalProperties": {"type": ["string", "integer"]},
                },
                "firmware_format": {
                    "description": IDENTIFY_FIELDS["firmware_format"],
                    "enum": list(FIRMWARE_FORMATS),
                    "default": FIRMWARE_FORMATS[0],
                },
            },
        },
        "common": {"$ref": "#/$defs/registers"},
        "variants": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "firmware": {
                        "description": VARIANT_FIELDS["firmware"],
                        "type": "string",
                        "pattern": _RANGE_PATTERN,
                    },
                    "name": {"description": VARIANT_FIELDS["name"], "type": "string"},
                    "registers": {"description": VARIANT_FIELDS["registers"], "$ref": "#/$defs/registers"},
                },
            },
        },
    }
    assert top.keys() == TOP_LEVEL_FIELDS.keys()
    return {
        "$schema": DRAFT,
        "title": "socgw vendor profile",
        "description": "A battery unit's Modbus register map for socgw (see docs/profile-authoring.md).",
        "type": "object",
        "additionalProperties": False,
        "required": ["vendor", "model", "profile_version", "identify"],
        "anyOf": [{"required": ["common"]}, {"required": ["variants"]}],
        "properties": {key: {"description": TOP_LEVEL_FIELDS[key], **value} for key, value in top.items()},
        "$defs": {"registers": _registers_schema(), "entry": _entry_schema()},
    }


def schema_text() -> str:
    """The schema as the text `socgw profile schema` prints and profiles/profile.schema.json holds."""
    return schema_json(profile_schema())
