"""The metrics middleware on a real Starlette app over HTTP (Starlette's test client): every
request counted once with its route, status and backend, streams timed to their last byte,
failures and unknown paths included, in-flight back to zero."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from deploy.api.http_metrics import MetricsMiddleware
from deploy.serving.metrics import ROUTES, STAGES, route_label, status_class
from tests.support.recorders import MetricsRecorder

STREAM_PAUSE_S = 0.2


async def _answer(request: Request) -> Response:
    return JSONResponse({"answer": "hi"}, headers={"X-Vidserve-Backend": "ollama"})


async def _stream(request: Request) -> Response:
    async def pieces() -> AsyncIterator[str]:
        yield "data: 1\n\n"
        await asyncio.sleep(STREAM_PAUSE_S)
        yield "data: [DONE]\n\n"

    return StreamingResponse(pieces(), headers={"X-Vidserve-Backend": "vllm"})


async def _boom(request: Request) -> Response:
    raise RuntimeError("a bug")


async def _not_ready(request: Request) -> Response:
    return JSONResponse({"status": "not_ready"}, status_code=503)


@pytest.fixture
def recorded() -> tuple[TestClient, MetricsRecorder]:
    recorder = MetricsRecorder()
    app = Starlette(
        routes=[
            Route("/v1/video/analyze", _answer, methods=["POST"]),
            Route("/v1/chat/completions", _stream, methods=["POST"]),
            Route("/v1/models", _boom),
            Route("/readyz", _not_ready),
        ],
        middleware=[Middleware(MetricsMiddleware, metrics=recorder)],
    )
    return TestClient(app, raise_server_exceptions=False), recorder


def test_each_request_is_counted_once_with_route_status_and_backend(
    recorded: tuple[TestClient, MetricsRecorder],
) -> None:
    client, recorder = recorded
    assert client.post("/v1/video/analyze").status_code == 200
    assert client.post("/v1/chat/completions").status_code == 200
    assert client.get("/v1/models").status_code == 500
    assert client.get("/readyz").status_code == 503
    assert client.get("/v1/secret/../../etc").status_code == 404
    assert client.get("/v1/video/analyze").status_code == 405
    assert recorder.finished_requests == [
        ("analyze", 200, "ollama"),
        ("chat", 200, "vllm"),
        ("models", 500, None),
        ("readyz", 503, None),
        ("other", 404, None),  # an unknown path never becomes a label value
        ("analyze", 405, None),
    ]
    assert set(recorder.in_flight.values()) == {0}


def test_a_stream_is_timed_until_its_last_byte(
    recorded: tuple[TestClient, MetricsRecorder],
) -> None:
    client, recorder = recorded
    client.post("/v1/video/analyze")
    client.post("/v1/chat/completions")
    plain, streamed = recorder.latencies
    assert streamed >= STREAM_PAUSE_S > plain


def test_label_values_are_bounded() -> None:
    assert set(ROUTES.values()) == {
        "analyze", "chat", "models", "healthz", "readyz", "jobs", "search", "streams", "web",
    }  # fmt: skip
    assert route_label("/v1/video/jobs/job_123/events") == "jobs"  # ids never become labels
    assert route_label("/v1/video/jobs_and_more") == "other"
    assert STAGES == ("upload", "download", "extract_queue", "extract", "inference")
    assert [status_class(s) for s in (200, 401, 404, 503, 999)] == [
        "2xx", "4xx", "4xx", "5xx", "other",
    ]  # fmt: skip
