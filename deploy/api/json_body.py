"""JSON from clients, parsed with a depth limit: `[[[[...` 200,000 deep is a 400 naming the
limit, not a RecursionError turned into a plain-text 500. The size is capped before this (the
body reader, api/body.py; form fields by the multipart parser)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from deploy.core.errors import InvalidRequest


def loads(data: bytes | str, max_depth: int, *, what: str, param: str | None, code: str) -> Any:
    """`data` parsed; a 400 (`code`) when it is not JSON, a 400 `json_too_deep` when arrays
    and objects nest deeper than `max_depth` (http.max_json_depth)."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise _too_deep(what, max_depth, param) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"{what} is not valid JSON: {exc}", param=param, code=code) from None
    except ValueError:
        # Python refuses integers of more than 4,300 digits (int_max_str_digits): no option
        # takes such a number, so it is the client's error, not a 500.
        raise InvalidRequest(
            f"{what} holds a number with more digits than any option takes",
            param=param,
            code=code,
        ) from None
    if depth(value, stop_past=max_depth) > max_depth:
        raise _too_deep(what, max_depth, param)
    return value


def depth(value: Any, stop_past: int | None = None) -> int:
    """How deep arrays and objects nest in `value` (a scalar: 0), without recursion; stops
    counting once past `stop_past`."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level + 1)
        if stop_past is not None and deepest > stop_past:
            return deepest
        pending.extend((child, level + 1) for child in children)
    return deepest


def _too_deep(what: str, max_depth: int, param: str | None) -> InvalidRequest:
    return InvalidRequest(
        f"{what} nests arrays/objects deeper than http.max_json_depth ({max_depth})",
        param=param,
        code="json_too_deep",
    )


def invalid(exc: ValidationError, takes: str) -> InvalidRequest:
    """A body model's first validation error as a 400 naming the field; an unknown field
    says what the body takes (`takes`, e.g. "a stream takes url, name, ...")."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "body"
    if error["type"] == "extra_forbidden":
        return InvalidRequest(
            f"unknown field {where!r}; {takes}", param=where, code="unknown_parameter"
        )
    return InvalidRequest(f"{where}: {error['msg']}", param=where, code="invalid_value")
