"""The answers Ray Serve's proxy gives by itself, said in vidserve's JSON shape
(api/proxy_errors.py); the app's own answers untouched. Driven by Starlette's test client over
ASGI apps that answer as the proxy's app does in each case."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from deploy.api.proxy_errors import CALLBACK, JsonProxyErrors, middlewares

Sent = list[dict[str, Any]]


def _app(messages: Sent) -> Callable[[Scope, Receive, Send], Any]:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        for message in messages:
            await send(message)

    return app


def _client(messages: Sent) -> TestClient:
    return TestClient(JsonProxyErrors(_app(messages)), raise_server_exceptions=False)


def _start(status: int, content_type: str) -> dict[str, Any]:
    headers = [(b"content-type", content_type.encode())]
    return {"type": "http.response.start", "status": status, "headers": headers}


def _body(data: bytes, more: bool = False) -> dict[str, Any]:
    return {"type": "http.response.body", "body": data, "more_body": more}


def test_a_replica_that_died_before_answering_is_a_json_503_with_retry_after() -> None:
    response = _client([]).get("/v1/models", headers={"x-request-id": "r-1"})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    error = response.json()["error"]
    assert error["request_id"] == "r-1"
    assert error["code"] == "overloaded"
    assert "retry" in error["message"]


@pytest.mark.parametrize(("status", "code"), [(503, "overloaded"), (408, "request_timeout")])
def test_the_proxys_plain_text_errors_become_json(status: int, code: str) -> None:
    text = b"Request dropped due to backpressure (num_queued_requests=128)."
    response = _client([_start(status, "text/plain; charset=utf-8"), _body(text)]).get("/")
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"] == text.decode()


def test_the_apps_own_answers_pass_untouched() -> None:
    body = b'{"error": {"message": "m", "type": "server_error", "code": "internal_error"}}'
    response = _client([_start(500, "application/json"), _body(body)]).get("/")
    assert response.status_code == 500
    assert response.content == body
    ok = _client([_start(200, "text/plain"), _body(b"alive")]).get("/")
    assert (ok.status_code, ok.text) == (200, "alive")


def test_a_stream_cut_short_ends_with_an_error_event_and_done() -> None:
    first = b'data: {"choices": [{"delta": {"content": "a"}}]}\n\n'
    response = _client([_start(200, "text/event-stream"), _body(first, more=True)]).get("/")
    events = [line for line in response.text.splitlines() if line.startswith("data: ")]
    assert events[0] == first.decode().strip()
    assert events[1].startswith('data: {"error"')
    assert events[-1] == "data: [DONE]"


def test_the_callback_ray_loads_returns_the_middleware() -> None:
    module, _, name = CALLBACK.partition(":")
    assert (module, name) == ("deploy.api.proxy_errors", "middlewares")
    (middleware,) = middlewares()
    assert middleware.cls is JsonProxyErrors


def test_the_request_id_header_is_sent_once() -> None:
    start = _start(200, "text/plain")
    start["headers"] += [(b"x-request-id", b"r-2"), (b"X-Request-ID", b"r-2")]
    response = _client([start, _body(b"ok")]).get("/")
    assert response.headers.get_list("x-request-id") == ["r-2"]


def test_the_proxys_500_for_a_replica_that_died_midway_is_a_503_to_retry() -> None:
    """Ray's proxy answers a plain 500 when the ingress actor dies while it waits for the
    answer (RayActorError: proxy.py send_http_response_on_exception): the client should retry,
    as when the replica died before the proxy sent it anything. The chaos bench (kill the
    ingress under load) met it as a 500, outside its rule."""
    died = b"The actor died unexpectedly before finishing this task. (ActorDiedError ...)"
    sent = [_start(500, "text/plain; charset=utf-8"), _body(died)]
    response = _client(sent).get("/v1/models", headers={"x-request-id": "r-3"})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    error = response.json()["error"]
    assert (error["code"], error["request_id"]) == ("ingress_replica_died", "r-3")
    assert "retry" in error["message"]
    assert "ActorDiedError" not in error["message"]  # Ray's internals stay in the proxy's log
