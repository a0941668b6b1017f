"""Every error a route can end with, as the one JSON shape `{"error": {...}}` with its status.

Typed errors (`VidserveError`) carry their status and headers; Starlette's HTTP errors (404,
405) are said in the same shape; anything else is a fault of ours: a JSON 500 carrying the
request's id (also in the log line with the traceback and in the `X-Request-Id` header), never
Starlette's plain-text "Internal Server Error".
"""

from __future__ import annotations

import logging
import uuid

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Scope

from deploy.api.error_body import error_body
from deploy.core.errors import Failure, InvalidRequest, MethodNotAllowed, NotFound, VidserveError

logger = logging.getLogger("ray.serve.vidserve.ingress")

REQUEST_ID_HEADER = "X-Request-Id"


def request_id(scope: Scope) -> str:
    """The id the guard gave this request (api/guard.py), or a new one."""
    state = scope.setdefault("state", {})
    if "request_id" not in state:
        state["request_id"] = uuid.uuid4().hex
    return str(state["request_id"])


def error_response(
    error: VidserveError, scope: Scope | None = None, status: int | None = None
) -> JSONResponse:
    """`error` in the one JSON shape (api/error_body.py), with its status (or `status`) and
    headers; given the request's scope, its id in the body and in X-Request-Id."""
    headers = error.headers()
    rid = None
    if scope is not None:
        rid = headers[REQUEST_ID_HEADER] = request_id(scope)
    return JSONResponse(
        error_body(error, rid), status_code=status or error.status_code, headers=headers
    )


async def on_vidserve_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, VidserveError):
        raise exc
    if exc.kind is Failure.OVERLOADED and "retry_after_s" not in (exc.details or {}):
        # A full queue behind the ingress (max_queued_requests): when to come back.
        exc.details = {**(exc.details or {}), "retry_after_s": request.app.state.retry_after_s}
    if exc.status_code >= 500:
        logger.warning("%s %s failed: %s", request.method, request.url.path, exc.message)
    return error_response(exc, request.scope)


async def on_http_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, HTTPException):
        raise exc
    if exc.status_code == 404:
        error: VidserveError = NotFound(
            f"no route {request.url.path}; GET /openapi.json lists the API"
        )
    elif exc.status_code == 405:
        error = MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}")
    else:  # another HTTP error Starlette raised: its status, the one shape
        error = InvalidRequest(str(exc.detail), code="http_error")
        return error_response(error, request.scope, status=exc.status_code)
    return error_response(error, request.scope)


async def on_unexpected(request: Request, exc: Exception) -> Response:
    """A fault of ours: logged with its traceback and the request id the client was given."""
    rid = request_id(request.scope)
    if isinstance(exc, ClientDisconnect):  # not a fault: nobody is left to answer
        logger.info(
            "%s %s: the client went away (request %s)", request.method, request.url.path, rid
        )
        return Response(status_code=499)
    logger.error("%s %s failed (request %s)", request.method, request.url.path, rid, exc_info=exc)
    error = VidserveError(
        f"internal error; quote request id {rid} when reporting it", code="internal_error"
    )
    return error_response(error, request.scope)
