"""JSON Schemas (draft 2020-12) made from the field tables the loaders check with, so they cannot drift.

A schema gives editors completion and early checks; the loaders stay the authority (they also check
what a schema cannot say: overlaps, references between sections, files on disk).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from gateway.diagnostics.fields import SEMVER, Field, Kind

DRAFT = "https://json-schema.org/draft/2020-12/schema"


def field_schema(field: Field) -> dict[str, Any]:
    """The JSON Schema of one field (with its description)."""
    schema: dict[str, Any] = {"description": field.description} if field.description else {}
    if field.kind in (Kind.WHOLE, Kind.NUMBER):
        schema["type"] = "integer" if field.kind is Kind.WHOLE else "number"
        for keyword, bound in (
            ("minimum", field.low),
            ("maximum", field.high),
            ("exclusiveMinimum", field.above),
        ):
            if bound is not None:
                schema[keyword] = bound
    elif field.kind is Kind.TEXT:
        schema.update({"type": "string", "minLength": 1})
        if field.pattern is not None:
            schema["pattern"] = field.pattern.pattern
    elif field.kind is Kind.FLAG:
        schema["type"] = "boolean"
    elif field.kind is Kind.CHOICE:
        schema["enum"] = list(field.choices)
    elif field.kind is Kind.VERSION:
        schema.update({"type": "string", "pattern": SEMVER.pattern})
    elif field.kind is Kind.SECTION:
        schema["type"] = "object"
        if field.fields is not None:
            schema["properties"] = properties(field.fields)
            schema["additionalProperties"] = False
        else:
            schema["additionalProperties"] = field_schema(field.values) if field.values else True
        if field.required:
            schema["required"] = list(field.required)
    elif field.kind is Kind.LIST:
        schema["type"] = "array"
        if field.values is not None:
            schema["items"] = field_schema(field.values)
    schema.update(field.schema)
    if field.nullable:
        return {"anyOf": [schema, {"type": "null"}]}
    return schema


def properties(fields: Mapping[str, Field]) -> dict[str, Any]:
    return {key: field_schema(field) for key, field in fields.items()}


def document_schema(
    title: str, description: str, fields: Mapping[str, Field], required: Sequence[str] = ()
) -> dict[str, Any]:
    """The schema of a whole file whose top level is `fields`."""
    schema: dict[str, Any] = {
        "$schema": DRAFT,
        "title": title,
        "description": description,
        "type": "object",
        "additionalProperties": False,
        "properties": properties(fields),
    }
    if required:
        schema["required"] = list(required)
    return schema


def schema_json(schema: Mapping[str, Any]) -> str:
    """A schema as the text the `schema` commands print."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
