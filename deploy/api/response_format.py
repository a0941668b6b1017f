"""Structured output: a request's `response_format`, checked once into the JSON schema the
engine constrains its answer to.

A JSON body (chat, a JSON job) was parsed once, under the depth guard, with the whole body: its
`response_format` is validated as it is (`schema_of`), never dumped and parsed again. A form field
(analyze, a multipart job) carries it as text: parsed once here, under the same guard
(`schema_from_text`).
"""

from __future__ import annotations

from typing import Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, ConfigDict, Field

from deploy.api import json_body
from deploy.core.errors import InvalidRequest


class JsonSchemaSpec(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = "response"
    json_schema: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    """OpenAI's `response_format`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaSpec | None = None


def schema_of(response_format: ResponseFormat | None) -> dict[str, Any] | None:
    """The schema `response_format` asks for (None: free text); 400 when it is not one."""
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_object":
        return {"type": "object"}
    if response_format.json_schema is None:
        raise InvalidRequest(
            "response_format of type json_schema needs a 'json_schema' object with a 'schema'",
            param="response_format.json_schema",
            code="invalid_json_schema",
        )
    return checked_schema(response_format.json_schema.json_schema)


def schema_from_text(raw: str | None, max_depth: int) -> dict[str, Any] | None:
    """A form field's schema: bare, or wrapped OpenAI-style in {"type": "json_schema", ...}."""
    if raw is None or raw.strip() == "":
        return None
    value = json_body.loads(
        raw,
        max_depth,
        what="'response_format'",
        param="response_format",
        code="invalid_json_schema",
    )
    if isinstance(value, dict) and value.get("type") == "json_schema":
        value = (value.get("json_schema") or {}).get("schema")
    return checked_schema(value)


def checked_schema(value: Any) -> dict[str, Any]:
    """`value` if it is a valid JSON schema (draft 2020-12) object, else a 400 saying why."""
    if not isinstance(value, dict):
        raise InvalidRequest(
            "'response_format' must be a JSON schema object",
            param="response_format",
            code="invalid_json_schema",
        )
    try:
        Draft202012Validator.check_schema(value)
    except SchemaError as exc:
        raise InvalidRequest(
            f"'response_format' is not a valid JSON schema: {exc.message}",
            param="response_format",
            code="invalid_json_schema",
        ) from None
    return value
