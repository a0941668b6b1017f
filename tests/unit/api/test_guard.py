"""What an ingress replica lets in (api/guard.py, api/auth.py, api/error_handlers.py), over real
HTTP: the ingress's real Starlette app served by uvicorn on loopback, driven by httpx and by raw
sockets (for a client that trickles its body). Behind it, a backend stand-in whose answers can be
held, so requests stay in flight while the test looks.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from deploy.api.auth import ApiKeys
from deploy.config.settings import AppArgs
from deploy.core.messages import InferenceRequest, InferenceResult
from deploy.ingress import build_http_app
from deploy.serving.backends import BackendRouter
from deploy.serving.pipeline import AnalyzePipeline
from tests.support.asgi_server import uvicorn_server
from tests.support.handles import AnsweringHandle
from tests.support.recorders import MetricsRecorder

MODEL = "qwen2.5vl:7b"
KEY_A = "key-a-0123456789abcdef"
KEY_B = "key-b-0123456789abcdef"


@dataclass
class HeldBackend:
    """Answers once `release` is set; counts what it is holding."""

    name: str = "ollama"
    release: threading.Event = field(default_factory=threading.Event)
    holding: int = 0
    answered: int = 0

    async def answer(self, request: InferenceRequest) -> InferenceResult:
        self.holding += 1
        try:
            while not self.release.is_set():
                await asyncio.sleep(0.01)
        finally:
            self.holding -= 1
        self.answered += 1
        return InferenceResult("ok", MODEL, self.name, 1, 1)

    async def ready(self, timeout_s: float) -> str:
        return MODEL


@dataclass
class Server:
    url: str
    backend: HeldBackend
    port: int


@contextmanager
def _serve(args: AppArgs, keys: list[str] | None = None) -> Iterator[Server]:
    backend = HeldBackend()
    router = BackendRouter([backend], args.backends.circuit_breaker)  # type: ignore[list-item]
    pipeline = AnalyzePipeline(extractor=None, router=router, args=args)  # type: ignore[arg-type]
    app = build_http_app(pipeline, args, ApiKeys(keys or []), MetricsRecorder())
    with uvicorn_server(app) as port:
        try:
            yield Server(f"http://127.0.0.1:{port}", backend, port)
        finally:
            backend.release.set()


def _args(**sections: dict[str, Any]) -> AppArgs:
    base: dict[str, Any] = {"backends": {"primary": "ollama", "fallback": "none"}}
    return AppArgs.model_validate(base | sections)


def _chat(text: str = "hi") -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": text}], "max_tokens": 4}


def _wait_for(condition: Any, what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def server() -> Iterator[Server]:
    with _serve(_args()) as running:
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
    with _serve(_args(http={"max_json_depth": 8})) as server:
        for depth, too_deep in ((8, False), (9, True)):
            nested: Any = 1
            for _ in range(depth - 1):  # inside the body's own object
                nested = [nested]
            response = httpx.post(
                f"{server.url}/v1/chat/completions",
                json=_chat() | {"user": nested},
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
        f"{server.url}/v1/chat/completions", json=_chat(), headers={"X-Request-Id": "abc-123"}
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


def _send_head(port: int, length: int, path: str = "/v1/chat/completions") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n".encode()
    )
    return sock


def _read_response(sock: socket.socket, timeout_s: float = 10.0) -> tuple[int, dict[str, str], str]:
    sock.settimeout(timeout_s)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return int(lines[0].split()[1]), headers, rest.decode()


def test_past_the_byte_budget_a_request_gets_503_at_once_and_the_budget_comes_back() -> None:
    """JSON bodies count 3x their size: a first one of 1 MiB holds 3 MiB of a 5 MiB budget, so
    a second of 800 KiB (2.4 MiB) does not fit (5 MiB is about the least the config allows
    for a 256 KiB max upload)."""
    args = _args(
        extraction={"max_upload_bytes": 256 * 1024},
        # One client may hold all of it here: this is the replica's budget, not the share.
        http={"max_inflight_bytes": 1024 * 1024 * 5, "max_inflight_bytes_per_client": 5 << 20},
    )
    with _serve(args) as server:
        # A first body, declared and half sent: its 2 x 1 MiB are held while it trickles in.
        first = _send_head(server.port, 1024 * 1024)
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
        _wait_for(
            lambda: (
                httpx.post(f"{server.url}/v1/chat/completions", json=_chat()).status_code == 200
            ),
            "the budget to come back",
        )


def test_a_body_trickling_under_the_minimum_rate_is_cut_with_408() -> None:
    args = _args(http={"min_body_bytes_per_s": 1000, "body_rate_window_s": 0.5})
    with _serve(args) as server:
        sock = _send_head(server.port, 100_000)
        started = time.monotonic()
        try:
            for _ in range(40):  # 10 bytes every 50 ms: 200 bytes/s
                sock.sendall(b" " * 10)
                time.sleep(0.05)
        except OSError:
            pass  # the server closed the connection after answering
        status, _, text = _read_response(sock)
        sock.close()
        assert status == 408, text
        assert json.loads(text)["error"]["code"] == "request_timeout"
        assert "http.min_body_bytes_per_s" in text
        assert time.monotonic() - started < 3


def test_a_stalled_body_is_cut_with_408_and_a_fast_one_passes() -> None:
    args = _args(http={"min_body_bytes_per_s": 1000, "body_rate_window_s": 0.5})
    with _serve(args) as server:
        sock = _send_head(server.port, 50)
        sock.sendall(b"{")  # then nothing
        status, _, text = _read_response(sock)
        sock.close()
        assert status == 408, text
        server.backend.release.set()
        assert httpx.post(f"{server.url}/v1/chat/completions", json=_chat()).status_code == 200


def test_one_key_past_its_concurrency_gets_429_and_other_keys_pass() -> None:
    args = _args(auth={"max_concurrent_per_key": 2})
    with _serve(args, keys=[KEY_A, KEY_B]) as server:

        def post(key: str) -> httpx.Response:
            return httpx.post(
                f"{server.url}/v1/chat/completions",
                json=_chat(),
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
            )

        held = [threading.Thread(target=post, args=(KEY_A,)) for _ in range(2)]
        for thread in held:
            thread.start()
        _wait_for(lambda: server.backend.holding == 2, "two requests of key A in flight")
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
    args = _args()
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
