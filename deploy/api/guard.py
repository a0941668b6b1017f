"""What one ingress replica lets in, checked before a route reads a byte (ASGI middleware).

* A request id for every request (`X-Request-Id`: the client's when it sent a sane one), in
  every error body and log line of the request.
* Memory: a budget of request bytes in flight per replica (`http.max_inflight_bytes`). A body
  is counted with what is made of it (a JSON body 3x: its bytes, the parsed text, the decoded
  media; an upload 2x: the file read from its spool, the copy handed to the extractor) from its
  declared Content-Length before it is read, or as it arrives when it declares none. A
  request that would pass the budget gets 503 `overloaded` with Retry-After at once: nothing
  is buffered for it, and no queue builds up in memory.
* Slow clients: a body that arrives slower than `http.min_body_bytes_per_s` over a window of
  `http.body_rate_window_s` is cut with 408, so a trickle cannot hold memory and a slot.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deploy.api.error_handlers import REQUEST_ID_HEADER, error_response
from deploy.config.settings import (
    JSON_BODY_MEMORY_FACTOR,
    MULTIPART_BODY_MEMORY_FACTOR,
    HttpSettings,
)
from deploy.serving.errors import Overloaded, RequestTimeout
from deploy.serving.numbers import decimal

_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


@dataclass
class ByteBudget:
    """Bytes in flight on this replica (one event loop: no lock needed)."""

    limit: int
    held: int = 0

    def take(self, amount: int) -> bool:
        if self.held + amount > self.limit:
            return False
        self.held += amount
        return True

    def give(self, amount: int) -> None:
        self.held -= amount


class GuardMiddleware:
    def __init__(self, app: ASGIApp, settings: HttpSettings, budget: ByteBudget) -> None:
        self.app = app
        self._settings = settings
        self._budget = budget

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        given = headers.get(REQUEST_ID_HEADER, "")
        rid = given if _SANE_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        send = _with_request_id(send, rid)
        declared = headers.get("content-length", "")
        is_json = headers.get("content-type", "").startswith("application/json")
        body = _Body(
            self._budget,
            self._settings,
            declared=decimal(declared),
            factor=JSON_BODY_MEMORY_FACTOR if is_json else MULTIPART_BODY_MEMORY_FACTOR,
        )
        if not body.reserve_declared():
            await error_response(body.overloaded(), scope)(scope, receive, send)
            return
        try:
            await self.app(scope, body.wrap(receive), send)
        finally:
            body.release()


def _with_request_id(send: Send, rid: str) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message.setdefault("headers", [])
            names = {name.lower() for name, _ in message["headers"]}
            if REQUEST_ID_HEADER.lower().encode() not in names:
                message["headers"] = [
                    *message["headers"],
                    (REQUEST_ID_HEADER.lower().encode(), rid.encode()),
                ]
        await send(message)

    return sending


class _Body:
    """One request's body: its share of the budget, and the pace it arrives at."""

    def __init__(
        self, budget: ByteBudget, settings: HttpSettings, declared: int | None, factor: int
    ) -> None:
        self._budget = budget
        self._settings = settings
        self._declared = declared
        self._factor = factor
        self._retry_after_s = settings.retry_after_s
        self._taken = 0
        self._received = 0
        self._complete = False
        self._window_start = 0.0
        self._window_bytes = 0

    def reserve_declared(self) -> bool:
        if not self._declared:
            return True
        amount = self._declared * self._factor
        if amount > self._budget.limit:
            # Past every route's size cap (AppArgs checks the budget holds the largest body):
            # the route answers 413 from the declared size without reading it.
            return True
        return self._take(amount)

    def _take(self, amount: int) -> bool:
        if not self._budget.take(amount):
            return False
        self._taken += amount
        return True

    def release(self) -> None:
        self._budget.give(self._taken)
        self._taken = 0

    def overloaded(self) -> Overloaded:
        return Overloaded(
            f"this replica holds {self._budget.held} of its {self._budget.limit} bytes of "
            "requests in flight (http.max_inflight_bytes); retry after "
            f"{self._retry_after_s} s",
            details={"retry_after_s": self._retry_after_s},
        )

    def wrap(self, receive: Receive) -> Receive:
        async def receiving() -> Message:
            if self._complete:  # after the body: waits for a disconnect, however long
                return await receive()
            message = await self._next(receive)
            if message["type"] == "http.request":
                self._arrived(len(message.get("body", b"")))
                self._complete = not message.get("more_body", False)
            return message

        return receiving

    async def _next(self, receive: Receive) -> Message:
        """The next message, or 408 once a window passes with too few bytes."""
        loop = asyncio.get_running_loop()
        window = self._settings.body_rate_window_s
        if not self._window_start:
            self._window_start = loop.time()
        while True:
            remaining = self._window_start + window - loop.time()
            if remaining > 0:
                try:
                    return await asyncio.wait_for(receive(), timeout=remaining)
                except TimeoutError:
                    pass
            if self._window_bytes < self._settings.min_body_bytes_per_s * window:
                raise RequestTimeout(
                    f"the request body arrived at {self._window_bytes / window:.0f} bytes/s over "
                    f"{window:g} s, under http.min_body_bytes_per_s "
                    f"({self._settings.min_body_bytes_per_s}); send it faster or by URL"
                )
            self._window_start, self._window_bytes = loop.time(), 0

    def _arrived(self, size: int) -> None:
        self._received += size
        self._window_bytes += size
        # Past what was declared (or nothing declared): counted as it arrives.
        beyond = self._received * self._factor - self._taken
        if beyond > 0 and not self._take(beyond):
            raise self.overloaded()
