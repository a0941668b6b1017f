"""The one reader of request bodies: the content type checked, the size capped before reading
(a declared Content-Length over the limit) and while streaming (a body that grows past it)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from starlette.requests import Request

from deploy.core.errors import InvalidRequest, PayloadTooLarge
from deploy.core.numbers import decimal


def require_content_type(request: Request, expected: str, what: str) -> None:
    """A 400 unless the body is `expected` (e.g. application/json); `what` says what to send."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(expected):
        raise InvalidRequest(
            f"expected {what}, got {content_type or 'no content type'!r}",
            code="unsupported_content_type",
        )


async def capped_stream(
    request: Request, limit: int, too_large: Callable[[], PayloadTooLarge]
) -> AsyncIterator[bytes]:
    """The body's chunks; `too_large()` is raised once more than `limit` bytes are declared or
    have arrived, so nothing past the limit is buffered."""
    declared = decimal(request.headers.get("content-length"))
    if declared is not None and declared > limit:
        raise too_large()
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise too_large()
        yield chunk


async def read_capped(
    request: Request, limit: int, too_large: Callable[[], PayloadTooLarge]
) -> bytes:
    return b"".join([chunk async for chunk in capped_stream(request, limit, too_large)])
