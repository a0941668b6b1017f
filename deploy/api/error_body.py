"""The one JSON shape every error is said in: `{"error": {"message", "type", "code", ...}}`.

Built here alone, from a `core/errors.py` error: route errors (api/error_handlers.py), errors
inside a stream (an OpenAI chunk stream, a job's event stream) and the answers Ray's proxy gives
by itself (api/proxy_errors.py) all come through `error_body`.
"""

from __future__ import annotations

import json
from typing import Any

from deploy.core.errors import VidserveError


def error_body(error: VidserveError, request_id: str | None = None) -> dict[str, Any]:
    """`{"error": {...}}`: message, type, code, then param, the error's details and the request's
    id where there are some."""
    body: dict[str, Any] = {"message": error.message, "type": error.error_type, "code": error.code}
    if error.param is not None:
        body["param"] = error.param
    if error.details:
        body.update(error.details)
    if request_id is not None:
        body["request_id"] = request_id
    return {"error": body}


def error_json(error: VidserveError, request_id: str | None = None) -> bytes:
    return json.dumps(error_body(error, request_id)).encode()
