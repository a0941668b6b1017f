"""What an ingress replica lets in (api/guard.py, api/auth.py, api/error_handlers.py), over real
HTTP: the ingress's real Starlette app served by uvicorn on loopback, driven by httpx and by raw
sockets (for a client that trickles its body). Behind it, a backend stand-in whose answers can be
held, so requests stay in flight while the test looks.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from deploy.api.auth import ApiKeys
from deploy.ingress import build_http_app
from deploy.serving.backends import BackendRouter
from deploy.serving.pipeline import AnalyzePipeline
from tests.support.guarded_app import (
    KEY_A,
    KEY_B,
    HeldBackend,
    Server,
    app_args,
    chat,
    read_response,
    send_head,
    serve,
    wait_for,
)
from tests.support.handles import AnsweringHandle
from tests.support.recorders import MetricsRecorder


@pytest.fixture
def server() -> Iterator[Server]:
    with serve(app_args()) as running:
        yield running


def test_a_deeply_nested_body_is_a_json_400_not_a_500(server: Server) -> None:
    body = b"[" * 200_000
    response = httpx.post(
        f"{server.url}/v1/chat/completions",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "json_too_deep"
    assert "http.max_json_depth" in error["message"]
    assert error["request_id"] == response.headers["x-request-id"]


def test_nesting_at_the_depth_limit_passes_the_check_and_one_more_does_not() -> None:
    with serve(app_args(http={"max_json_depth": 8})) as server:
        for depth, too_deep in ((8, False), (9, True)):
            nested: Any = 1
            for _ in range(depth - 1):  # inside the body's own object
                nested = [nested]
            response = httpx.post(
                f"{server.url}/v1/chat/completions",
                json=chat() | {"user": nested},
                headers={"content-type": "application/json"},
            )
            assert response.status_code == 400
            assert (response.json()["error"]["code"] == "json_too_deep") is too_deep


def test_an_unexpected_fault_is_a_json_500_with_the_request_id(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr("deploy.api.openai_routes.parse_chat", broken)
    response = httpx.post(
        f"{server.url}/v1/chat/completions", json=chat(), headers={"X-Request-Id": "abc-123"}
    )
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "internal_error"
    assert error["request_id"] == "abc-123" == response.headers["x-request-id"]
    assert "abc-123" in error["message"]
    assert "a bug" not in response.text  # no internals leak


def test_a_request_id_is_made_when_the_clients_is_not_sane(server: Server) -> None:
    response = httpx.get(f"{server.url}/healthz", headers={"X-Request-Id": "bad id\twith junk"})
    assert response.status_code == 200
    rid = response.headers["x-request-id"]
    assert len(rid) == 32
    assert rid.isalnum()


def test_past_the_byte_budget_a_request_gets_503_at_once_and_the_budget_comes_back() -> None:
    """JSON bodies count 3x their size: a first one of 1 MiB holds 3 MiB of a 5 MiB budget, so
    a second of 800 KiB (2.4 MiB) does not fit (5 MiB is about the least the config allows
    for a 256 KiB max upload)."""
    args = app_args(
        extraction={"max_upload_bytes": 256 * 1024},
        # One client may hold all of it here: this is the replica's budget, not the share.
        http={"max_inflight_bytes": 1024 * 1024 * 5, "max_inflight_bytes_per_client": 5 << 20},
    )
    with serve(args) as server:
        # A first body, declared and half sent: its 2 x 1 MiB are held while it trickles in.
        first = send_head(server.port, 1024 * 1024)
        first.sendall(b"{")
        time.sleep(0.2)
        started = time.monotonic()
        second = httpx.post(
            f"{server.url}/v1/chat/completions",
            content=b"x" * (800 * 1024),
            headers={"content-type": "application/json"},
        )
        assert time.monotonic() - started < 2  # refused at once, not queued
        assert second.status_code == 503, second.text
        assert second.headers["retry-after"] == "2"
        error = second.json()["error"]
        assert error["code"] == "overloaded"
        assert "http.max_inflight_bytes" in error["message"]
        first.close()  # the first client goes away: its bytes are given back
        server.backend.release.set()
        wait_for(
            lambda: httpx.post(f"{server.url}/v1/chat/completions", json=chat()).status_code == 200,
            "the budget to come back",
        )


def test_a_body_trickling_under_the_minimum_rate_is_cut_with_408() -> None:
    args = app_args(http={"min_body_bytes_per_s": 1000, "body_rate_window_s": 0.5})
    with serve(args) as server:
        sock = send_head(server.port, 100_000)
        started = time.monotonic()
        try:
            for _ in range(40):  # 10 bytes every 50 ms: 200 bytes/s
                sock.sendall(b" " * 10)
                time.sleep(0.05)
        except OSError:
            pass  # the server closed the connection after answering
        status, _, text = read_response(sock)
        sock.close()
        assert status == 408, text
        assert json.loads(text)["error"]["code"] == "request_timeout"
        assert "http.min_body_bytes_per_s" in text
        assert time.monotonic() - started < 3


def test_a_stalled_body_is_cut_with_408_and_a_fast_one_passes() -> None:
    args = app_args(http={"min_body_bytes_per_s": 1000, "body_rate_window_s": 0.5})
    with serve(args) as server:
        sock = send_head(server.port, 50)
        sock.sendall(b"{")  # then nothing
        status, _, text = read_response(sock)
        sock.close()
        assert status == 408, text
        server.backend.release.set()
        assert httpx.post(f"{server.url}/v1/chat/completions", json=chat()).status_code == 200


def test_one_key_past_its_concurrency_gets_429_and_other_keys_pass() -> None:
    args = app_args(auth={"max_concurrent_per_key": 2})
    with serve(args, keys=[KEY_A, KEY_B]) as server:

        def post(key: str) -> httpx.Response:
            return httpx.post(
                f"{server.url}/v1/chat/completions",
                json=chat(),
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
            )

        held = [threading.Thread(target=post, args=(KEY_A,)) for _ in range(2)]
        for thread in held:
            thread.start()
        wait_for(lambda: server.backend.holding == 2, "two requests of key A in flight")
        refused = post(KEY_A)
        assert refused.status_code == 429, refused.text
        assert refused.headers["retry-after"] == "2"
        assert refused.json()["error"]["code"] == "too_many_concurrent_requests"
        assert "auth.max_concurrent_per_key" in refused.json()["error"]["message"]
        server.backend.release.set()
        assert post(KEY_B).status_code == 200
        for thread in held:
            thread.join()
        assert post(KEY_A).status_code == 200  # its slots came back


async def _refused() -> None:
    """What Serve's handle raises when every replica and its queue are full."""
    from ray.serve.exceptions import BackPressureError

    raise BackPressureError(num_queued_requests=32, max_queued_requests=32)


def test_a_full_extractor_queue_is_a_503_with_retry_after_at_once() -> None:
    args = app_args()
    router = BackendRouter([HeldBackend()], args.backends.circuit_breaker)  # type: ignore[list-item]
    pipeline = AnalyzePipeline(AnsweringHandle(_refused), router, args)  # type: ignore[arg-type]
    app = build_http_app(pipeline, args, ApiKeys([]), MetricsRecorder())
    from starlette.testclient import TestClient

    started = time.monotonic()
    response = TestClient(app).post(
        "/v1/video/analyze",
        files={"file": ("v.mp4", b"\x00\x00\x00\x18ftypmp42" + b"\0" * 64, "video/mp4")},
        data={"prompt": "what?"},
    )
    assert time.monotonic() - started < 2
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "2"
    error = response.json()["error"]
    assert error["code"] == "extract_overloaded"
    assert "max_queued_requests" in error["message"]
