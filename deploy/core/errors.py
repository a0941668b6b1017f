"""Typed errors carrying their HTTP status, error type and code.

Every error a client can see is a `VidserveError`. They cross replica boundaries (Ray pickles
them), so each keeps its state in plain attributes and round-trips through `__reduce__`. The
JSON body they are said in, `{"error": {"message": ..., "type": ..., "code": ...}}`, is built in
one place: api/error_body.py.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, ParamSpec, TypeVar


class Failure(StrEnum):
    """Why a stage could not answer, for the backend policy, metrics and logs (a bounded set,
    kept as a type: never read back out of an error code)."""

    TIMEOUT = "timeout"
    ENGINE_ERROR = "engine_error"
    OVERLOADED = "overloaded"  # a full queue: load, not ill health
    NOT_DEPLOYED = "not_deployed"
    REPLICA_DIED = "replica_died"
    NO_REPLICA = "no_replica"  # no replica took the request within backends.assign_timeout_s
    UNAVAILABLE = "unavailable"


class VidserveError(Exception):
    status_code: ClassVar[int] = 500
    error_type: ClassVar[str] = "server_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        details: dict[str, Any] | None = None,
        failure: Failure | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code()
        self.param = param
        # Extra fields of the error object, e.g. `backends` (the state of each backend).
        self.details = details
        # Set where the cause is known (deploy/serving/handles.py); else told by the class: `kind`.
        self.failure = failure

    # The code when none is given: this, else the error type.
    code_default: ClassVar[str | None] = None

    @classmethod
    def default_code(cls) -> str:
        return cls.code_default or cls.error_type

    @property
    def kind(self) -> Failure:
        """Why it failed, as the backend policy counts it."""
        if self.failure is not None:
            return self.failure
        if isinstance(self, BackendTimeout):
            return Failure.TIMEOUT
        if isinstance(self, EngineError):
            return Failure.ENGINE_ERROR
        return Failure.UNAVAILABLE

    def __reduce__(self) -> tuple[Any, ...]:
        fields = {
            "code": self.code,
            "param": self.param,
            "details": self.details,
            "failure": self.failure,
        }
        return (_rebuild, (type(self), self.message, fields))

    def headers(self) -> dict[str, str]:
        """HTTP headers of the response: Retry-After where the error says when to retry."""
        retry = (self.details or {}).get("retry_after_s")
        return {"Retry-After": str(retry)} if retry is not None else {}


def _rebuild(cls: type[VidserveError], message: str, fields: dict[str, Any]) -> VidserveError:
    return cls(message, **fields)


class InvalidRequest(VidserveError):
    """The request itself is wrong (missing field, bad option)."""

    status_code = 400
    error_type = "invalid_request_error"


class UnprocessableInput(VidserveError):
    """Well-formed request whose content cannot be processed (not a video, corrupt video)."""

    status_code = 422
    error_type = "invalid_request_error"


class PayloadTooLarge(VidserveError):
    status_code = 413
    error_type = "invalid_request_error"
    code_default = "payload_too_large"


class Unauthorized(VidserveError):
    """No API key, or not a valid one."""

    status_code = 401
    error_type = "invalid_request_error"


class NotFound(VidserveError):
    status_code = 404
    error_type = "not_found_error"


class MethodNotAllowed(VidserveError):
    status_code = 405
    error_type = "invalid_request_error"


class ServiceUnavailable(VidserveError):
    """No backend can answer now (not ready, overloaded, down)."""

    status_code = 503
    error_type = "service_unavailable"


class Overloaded(ServiceUnavailable):
    """This replica is full (bytes in flight, queues): refused at once, to be retried after
    `details.retry_after_s` (also the Retry-After header)."""

    code_default = "overloaded"


class RequestTimeout(VidserveError):
    """The client sent its request too slowly."""

    status_code = 408
    error_type = "invalid_request_error"
    code_default = "request_timeout"


class TooManyRequests(VidserveError):
    """One API key has too many requests in flight."""

    status_code = 429
    error_type = "rate_limit_error"
    code_default = "too_many_concurrent_requests"


class Gone(VidserveError):
    """It existed, and was deleted on purpose (e.g. a job's video after its retention time)."""

    status_code = 410
    error_type = "invalid_request_error"


class InsufficientStorage(VidserveError):
    """The disk the service keeps jobs on is too full to take more (jobs.min_free_bytes)."""

    status_code = 507
    error_type = "service_unavailable"
    code_default = "insufficient_storage"


class BackendTimeout(VidserveError):
    status_code = 504
    error_type = "timeout_error"


class EngineError(VidserveError):
    """The inference engine failed on a valid request."""

    status_code = 500
    error_type = "engine_error"


P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class Refusal:
    """A client's error (4xx) that a replica answers as a value instead of raising it: Ray Serve
    logs every exception a replica method raises with its traceback, so a corrupt upload would
    write 20 lines to the log. `handles.call_stage` raises it again on the caller's side."""

    error: VidserveError


def refusals_returned(
    method: Callable[P, Awaitable[R]],
) -> Callable[P, Awaitable[R | Refusal]]:
    """A replica method whose 4xx errors are returned as `Refusal`s (5xx are still raised)."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | Refusal:
        try:
            return await method(*args, **kwargs)
        except VidserveError as exc:
            if exc.status_code >= 500:
                raise
            return Refusal(exc)

    return wrapper
