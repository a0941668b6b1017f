"""vidserve's JSON error shape for the answers Ray Serve's HTTP proxy gives by itself.

Some answers never reach the ingress: its queue is full (the proxy answers a plain-text 503),
the request timed out in the proxy (408), or the ingress replica died mid-request (the proxy
answers a plain 500 with Ray's error, or sends nothing and its server answers a bare "Internal
Server Error"): both are said as a 503 to retry. This middleware runs
in the proxy (Ray loads it from RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH, which `vidserve run`
and the k8s manifests set to `deploy.api.proxy_errors:middlewares`) and says each in the JSON
shape, with Retry-After where retrying is the answer. Responses of the app pass untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deploy.api.error_body import error_json
from deploy.core.errors import Overloaded, RequestTimeout, ServiceUnavailable, VidserveError

logger = logging.getLogger("ray.serve.vidserve.proxy")

CALLBACK = "deploy.api.proxy_errors:middlewares"
_DIED = "the replica handling this request stopped before answering (it is being replaced); retry"
# Seconds a client should wait before retrying what the proxy refused (a replica restarting
# takes seconds; a full queue drains in about as long).
RETRY_AFTER_S = 2
# The proxy's own answers vidserve says again, as the error each one is (its status is kept).
_ERRORS: dict[int, Callable[[str], VidserveError]] = {
    408: RequestTimeout,
    429: lambda message: Overloaded(message, details={"retry_after_s": RETRY_AFTER_S}),
    # The proxy's own 500 is its account of the ingress actor dying while it waited for the
    # answer (RayActorError; the app's 500s are JSON and pass untouched): a retry is the answer,
    # as when the replica died before sending anything. Ray's text stays in the proxy's log.
    500: lambda _: ServiceUnavailable(
        _DIED, code="ingress_replica_died", details={"retry_after_s": RETRY_AFTER_S}
    ),
    503: lambda message: Overloaded(message, details={"retry_after_s": RETRY_AFTER_S}),
}
# The proxy's statuses said as another (the others are kept).
_SAID_AS = {500: ServiceUnavailable.status_code}


def middlewares() -> list[Middleware]:
    """What Ray's proxy calls (RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH)."""
    return [Middleware(JsonProxyErrors)]


def proxy_error(status: int, message: str) -> VidserveError:
    """The error the proxy's `status` answer is (`proxy_error` for any other)."""
    make = _ERRORS.get(status)
    return make(message) if make else VidserveError(message, code="proxy_error")


class JsonProxyErrors:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response = _Response(scope, send)
        try:
            await self.app(scope, receive, response.send)
        finally:
            if not response.started:
                # Nothing was sent: the replica died (or the proxy failed) before answering.
                await response.replace(503, _DIED)
            elif not response.finished and response.streaming:
                # A stream cut short by the replica's death: end it as vidserve's streams end
                # on an error, with an error event, then [DONE].
                await response.end_stream_with_error(_DIED)


def _one_request_id(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The app sets X-Request-Id and so does Ray's proxy (the same id: the app took it from
    the request): keep the first."""
    seen = False
    kept = []
    for name, value in headers:
        if name.lower() == b"x-request-id":
            if seen:
                continue
            seen = True
        kept.append((name, value))
    return kept


class _Response:
    """The app's answer, passed on, except a non-JSON error of the proxy's, which is held and
    said again in JSON."""

    def __init__(self, scope: Scope, send: Send) -> None:
        self._scope = scope
        self._send = send
        self.started = False
        self.finished = False
        self.streaming = False
        self._held: Message | None = None
        self._body = b""

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            message["headers"] = _one_request_id(message.get("headers", []))
            content_type = Headers(raw=message.get("headers", [])).get("content-type", "")
            self.streaming = content_type.startswith("text/event-stream")
            if message["status"] in _ERRORS and "json" not in content_type:
                self._held = message
                return
        elif message["type"] == "http.response.body":
            if self._held is not None:
                self._body += message.get("body", b"")
                if message.get("more_body", False):
                    return
                text = self._body.decode(errors="replace").strip() or "the request failed"
                await self.replace(self._held["status"], text)
                return
            self.finished = not message.get("more_body", False)
        await self._send(message)

    async def end_stream_with_error(self, message: str) -> None:
        request_id = Headers(scope=self._scope).get("x-request-id", "")
        body = error_json(proxy_error(503, message), request_id)
        event = b"data: " + body + b"\n\ndata: [DONE]\n\n"
        logger.warning("ended the stream of request %s: %s", request_id, message)
        await self._send({"type": "http.response.body", "body": event})
        self.finished = True

    async def replace(self, status: int, message: str) -> None:
        request_id = Headers(scope=self._scope).get("x-request-id", "")
        error = proxy_error(status, message)
        body = error_json(error, request_id)
        headers = MutableHeaders(raw=[])
        headers["content-type"] = "application/json"
        headers["content-length"] = str(len(body))
        if request_id:
            headers["x-request-id"] = request_id
        headers.update(error.headers())
        said = _SAID_AS.get(status, status)
        if status >= 500:
            logger.warning("answered %d (the proxy's %d) for request %s: %s",
                           said, status, request_id, message)  # fmt: skip
        await self._send({"type": "http.response.start", "status": said, "headers": headers.raw})
        await self._send({"type": "http.response.body", "body": body})
        self.started = self.finished = True
