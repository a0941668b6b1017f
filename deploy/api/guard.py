"""What one ingress replica lets in, checked before a route reads a byte (ASGI middleware).

* A request id for every request (`X-Request-Id`: the client's when it sent a sane one), in
  every error body and log line of the request.
* Memory: a budget of request bytes in flight per replica (`http.max_inflight_bytes`). A body
  is counted with what is made of it (a JSON body 3x: its bytes, the parsed text, the decoded
  media; an upload 2x: the file read from its spool, the copy handed to the extractor) from its
  declared Content-Length before it is read, or as it arrives when it declares none. A
  request that would pass the budget gets 503 `overloaded` with Retry-After at once: nothing
  is buffered for it, and no queue builds up in memory.
* Only requests that carry a body to a route that reads one (POST, PUT, PATCH) take from the
  budget; any other method with a body (a Content-Length above 0, or chunked) is a 400
  `body_not_allowed` at once.
* Fair share: one client (its bearer token when it sends one, else its address) holds at most
  `http.max_inflight_bytes_per_client` of the budget; past it, 429 `client_bytes_in_flight`
  with Retry-After, so one key holder trickling large bodies cannot starve the others.
* Slow clients: a body that arrives slower than `http.min_body_bytes_per_s` over a window of
  `http.body_rate_window_s` is cut with 408, so a trickle cannot hold memory and a slot.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deploy.api.error_handlers import REQUEST_ID_HEADER, error_response
from deploy.config.settings import (
    JSON_BODY_MEMORY_FACTOR,
    MULTIPART_BODY_MEMORY_FACTOR,
    HttpSettings,
)
from deploy.core.errors import InvalidRequest, Overloaded, RequestTimeout, TooManyRequests
from deploy.core.numbers import decimal

_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


@dataclass
class ByteBudget:
    """Bytes in flight on this replica, in all and per client (one event loop: no lock)."""

    limit: int
    per_client: int | None = None  # None: no client limit of its own
    held: int = 0
    by_client: Counter[str] = field(default_factory=Counter)

    def take(self, amount: int, client: str = "") -> Literal["taken", "replica", "client"]:
        """`amount` held for `client`, or which limit refused it: the replica's whole budget
        (whoever asks), else the client's share."""
        if self.held + amount > self.limit:
            return "replica"
        if self.per_client is not None and self.by_client[client] + amount > self.per_client:
            return "client"
        self.held += amount
        self.by_client[client] += amount
        return "taken"

    def give(self, amount: int, client: str = "") -> None:
        self.held -= amount
        self.by_client[client] -= amount
        if self.by_client[client] <= 0:
            del self.by_client[client]  # the counter stays as small as the clients in flight


class GuardMiddleware:
    def __init__(
        self, app: ASGIApp, settings: HttpSettings, budget: ByteBudget, keys_enabled: bool = False
    ) -> None:
        self.app = app
        self._settings = settings
        self._budget = budget
        # Without API keys a bearer token is not checked: the address is who the client is.
        self._by_key = keys_enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        given = headers.get(REQUEST_ID_HEADER, "")
        rid = given if _SANE_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        send = _with_request_id(send, rid)
        declared = headers.get("content-length")
        if scope["method"] not in _BODY_METHODS:
            if (declared not in (None, "0")) or "transfer-encoding" in headers:
                refused = InvalidRequest(
                    f"a {scope['method']} request carries no body here; send it without one",
                    code="body_not_allowed",
                )
                await error_response(refused, scope)(scope, receive, send)
                return
            await self.app(scope, receive, send)  # nothing to read: nothing to reserve
            return
        is_json = headers.get("content-type", "").startswith("application/json")
        body = _Body(
            self._budget,
            self._settings,
            declared=decimal(declared),
            factor=JSON_BODY_MEMORY_FACTOR if is_json else MULTIPART_BODY_MEMORY_FACTOR,
            client=_client_of(scope, headers, self._by_key),
        )
        refused_early = body.reserve_declared()
        if refused_early is not None:
            await error_response(refused_early, scope)(scope, receive, send)
            return
        try:
            await self.app(scope, body.wrap(receive), send)
        finally:
            body.release()


def _client_of(scope: Scope, headers: Headers, by_key: bool) -> str:
    """Who a body's bytes are counted against: with API keys on, the bearer token (as a digest:
    keys are not kept) when one is sent, else the peer's address. Auth runs after this
    middleware, and an invalid token is refused before its body is read, so a made-up token
    holds nothing."""
    authorization = headers.get("authorization")
    if by_key and authorization:
        return "key:" + hashlib.sha256(authorization.encode()).hexdigest()[:16]
    peer = scope.get("client")
    return f"addr:{peer[0]}" if peer else "addr:?"


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
        self,
        budget: ByteBudget,
        settings: HttpSettings,
        declared: int | None,
        factor: int,
        client: str = "",
    ) -> None:
        self._budget = budget
        self._client = client
        self._settings = settings
        self._declared = declared
        self._factor = factor
        self._retry_after_s = settings.retry_after_s
        self._taken = 0
        self._received = 0
        self._complete = False
        self._window_start = 0.0
        self._window_bytes = 0

    def reserve_declared(self) -> Overloaded | TooManyRequests | None:
        """The declared body's share taken; the refusal when it does not fit."""
        if not self._declared:
            return None
        amount = self._declared * self._factor
        largest = min(self._budget.limit, self._budget.per_client or self._budget.limit)
        if amount > largest:
            # Past every route's size cap (AppArgs checks that the budget and a client's share
            # each hold the largest body): the route answers 413 from the declared size
            # without reading it.
            return None
        return self._take(amount)

    def _take(self, amount: int) -> Overloaded | TooManyRequests | None:
        outcome = self._budget.take(amount, self._client)
        if outcome == "replica":
            return self.overloaded()
        if outcome == "client":
            return self.over_share()
        self._taken += amount
        return None

    def release(self) -> None:
        self._budget.give(self._taken, self._client)
        self._taken = 0

    def over_share(self) -> TooManyRequests:
        return TooManyRequests(
            f"this client already has {self._budget.by_client[self._client]} bytes of requests "
            f"in flight on this replica; http.max_inflight_bytes_per_client allows "
            f"{self._budget.per_client}: wait for them to finish, retry after "
            f"{self._retry_after_s} s",
            code="client_bytes_in_flight",
            details={"retry_after_s": self._retry_after_s},
        )

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
        if beyond > 0 and (refused := self._take(beyond)) is not None:
            raise refused
