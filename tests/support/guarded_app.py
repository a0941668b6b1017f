"""The ingress's real Starlette app served by uvicorn on loopback, with a backend stand-in whose
answers can be held (requests stay in flight while a test looks), and raw-socket helpers for
clients that trickle their body: what the guard tests drive (tests/integration/api/)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from deploy.api.auth import ApiKeys
from deploy.config.settings import AppArgs
from deploy.core.messages import InferenceRequest, InferenceResult
from deploy.ingress import build_http_app
from deploy.serving.backends import BackendRouter
from deploy.serving.pipeline import AnalyzePipeline
from tests.support.asgi_server import uvicorn_server
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
def serve(args: AppArgs, keys: list[str] | None = None) -> Iterator[Server]:
    backend = HeldBackend()
    router = BackendRouter([backend], args.backends.circuit_breaker)  # type: ignore[list-item]
    pipeline = AnalyzePipeline(extractor=None, router=router, args=args)  # type: ignore[arg-type]
    app = build_http_app(pipeline, args, ApiKeys(keys or []), MetricsRecorder())
    with uvicorn_server(app) as port:
        try:
            yield Server(f"http://127.0.0.1:{port}", backend, port)
        finally:
            backend.release.set()


def app_args(**sections: dict[str, Any]) -> AppArgs:
    base: dict[str, Any] = {"backends": {"primary": "ollama", "fallback": "none"}}
    return AppArgs.model_validate(base | sections)


def chat(text: str = "hi") -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": text}], "max_tokens": 4}


def wait_for(condition: Any, what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def send_head(port: int, length: int, path: str = "/v1/chat/completions") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n".encode()
    )
    return sock


def read_response(sock: socket.socket, timeout_s: float = 10.0) -> tuple[int, dict[str, str], str]:
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
