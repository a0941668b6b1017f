"""Counts and times every HTTP request (ASGI middleware, outermost, so 401s and 404s count).

Per request: the route (a fixed set, "other" for anything else), the status class, the backend
that answered (the `X-Vidserve-Backend` response header; "none" when no backend did) and the
time until the last byte of the response, streams included. A request whose client goes away
mid-stream is counted with the status already sent.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deploy.api.auth import route_path
from deploy.serving.metrics import HttpMetrics, route_label

_BACKEND_HEADER = b"x-vidserve-backend"


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = route_label(route_path(scope))
        started = time.perf_counter()
        status = 500  # unless the app sends another before it fails
        backend: str | None = None
        done = False
        self._metrics.started(route)

        def finish() -> None:
            nonlocal done
            if not done:
                done = True
                self._metrics.finished(route, status, backend, time.perf_counter() - started)

        async def send_and_observe(message: Message) -> None:
            nonlocal status, backend
            if message["type"] == "http.response.start":
                status = int(message["status"])
                for name, value in message.get("headers", []):
                    if name.lower() == _BACKEND_HEADER:
                        backend = value.decode("latin-1")
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                finish()

        try:
            await self.app(scope, receive, send_and_observe)
        finally:
            finish()
