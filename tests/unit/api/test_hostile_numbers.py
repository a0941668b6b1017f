"""Numbers a client sends are checked before they leave the ingress (issue 26): a value the
engine would fail on is the client's 400 naming the field, never a 5xx that the circuit breaker
counts against a backend; absurd numbers (5,000 digits, Unicode digits) are 400s, not 500s.

The real Starlette app of the ingress over HTTP (Starlette's test client); the backend is a
stand-in that fails the way vLLM's engine does on a seed past 64 bits, and counts its calls.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from deploy.api.auth import ApiKeys
from deploy.api.jobs_routes import JobRoutes
from deploy.config.settings import AppArgs, JobsSettings, StoreSettings
from deploy.core.errors import EngineError
from deploy.core.messages import InferenceRequest, InferenceResult
from deploy.ingress import build_http_app
from deploy.jobs.job_runner import JobRunner
from deploy.jobs.store import open_store
from deploy.serving.backends import BackendRouter
from deploy.serving.pipeline import AnalyzePipeline
from tests.support.handles import AnsweringHandle
from tests.support.jobs_app import ScriptedWork
from tests.support.recorders import MetricsRecorder

MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"
INT64_MAX = 2**63 - 1


class _EngineLike:
    """Fails as vLLM does when a seed does not fit in 64 bits; answers otherwise."""

    name = "vllm"

    def __init__(self) -> None:
        self.calls = 0

    async def answer(self, request: InferenceRequest) -> InferenceResult:
        self.calls += 1
        seed = request.params.seed
        if seed is not None and not -(2**63) <= seed <= INT64_MAX:
            raise EngineError("OverflowError: Python int too large to convert to C long")
        return InferenceResult(
            text="ok", backend="vllm", model=MODEL, prompt_tokens=1, completion_tokens=1
        )

    async def ready(self, timeout_s: float) -> str:
        return MODEL


async def _never() -> None:
    raise AssertionError("no extraction expected")


@pytest.fixture
def engine() -> _EngineLike:
    return _EngineLike()


@pytest.fixture
def router(engine: _EngineLike) -> BackendRouter:
    args = AppArgs()
    return BackendRouter([engine], args.backends.circuit_breaker)  # type: ignore[list-item]


@pytest.fixture
def client(router: BackendRouter, tmp_path: Path) -> TestClient:
    args = AppArgs(jobs=JobsSettings(data_dir=tmp_path))
    store = open_store(StoreSettings(url=f"sqlite:///{tmp_path / 'jobs.db'}"), args.jobs)
    runner = JobRunner(store, ScriptedWork(duration_s=10.0), args.jobs, max_model_len=2048)
    pipeline = AnalyzePipeline(AnsweringHandle(_never), router, args)  # type: ignore[arg-type]
    app = build_http_app(
        pipeline, args, ApiKeys([]), MetricsRecorder(), (runner, JobRoutes(store, runner, args))
    )
    return TestClient(app, raise_server_exceptions=False)


def _chat(**fields: object) -> dict[str, object]:
    return {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **fields}


@pytest.mark.parametrize("seed", [2**64, 2**63, -(2**63) - 1])
def test_a_seed_past_64_bits_is_the_clients_400_and_never_opens_the_circuit(
    client: TestClient, router: BackendRouter, engine: _EngineLike, seed: int
) -> None:
    threshold = AppArgs().backends.circuit_breaker.failure_threshold
    for _ in range(threshold + 2):
        response = client.post("/v1/chat/completions", json=_chat(seed=seed))
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == "seed"
    assert engine.calls == 0  # refused before it left the ingress
    assert router.breaker("vllm").state.value == "closed"
    # Everyone else is still answered by the primary.
    answered = client.post("/v1/chat/completions", json=_chat(seed=INT64_MAX))
    assert answered.status_code == 200, answered.text
    assert engine.calls == 1


def test_an_integer_with_5000_digits_is_a_400(client: TestClient) -> None:
    body = json.dumps(_chat()).replace('"hi"}]', '"hi"}], "max_tokens": ' + "9" * 5000)
    response = client.post(
        "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_json"
    assert "digits" in response.json()["error"]["message"]


def test_a_job_request_with_a_5000_digit_number_is_a_400(client: TestClient) -> None:
    body = '{"task": "captions", "url": "http://example.com/v.mp4", "chunk_s": ' + "1" * 5000 + "}"
    response = client.post(
        "/v1/video/jobs", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text


@pytest.mark.parametrize("limit", ["²", "١٢", "0x10", "1e2", "-1", "9" * 5000, " 5"])
def test_search_and_list_limits_take_ascii_whole_numbers_only(
    client: TestClient, limit: str
) -> None:
    for path in ("/v1/video/search?q=a&limit=", "/v1/video/jobs?limit="):
        response = client.get(path + limit)
        assert response.status_code == 400, (path, limit, response.text)
        assert response.json()["error"]["param"] == "limit"


@pytest.mark.parametrize(
    ("field", "value"),
    [("seed", "18446744073709551616"), ("max_tokens", "9" * 5000), ("temperature", "nan")],
)
def test_analyze_form_numbers_are_range_checked(
    client: TestClient, engine: _EngineLike, field: str, value: str
) -> None:
    response = client.post(
        "/v1/video/analyze",
        files={"image": ("i.png", b"\x89PNG\r\n\x1a\n" + b"0" * 64, "image/png")},
        data={"prompt": "what?", field: value},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == field
    assert engine.calls == 0


def test_a_job_form_response_format_nested_past_the_depth_limit_is_a_400(
    client: TestClient,
) -> None:
    """The multipart job form carries response_format as JSON text: parsed with the same depth
    guard as every JSON body (it was a bare json.loads: RecursionError, a 500)."""
    response = client.post(
        "/v1/video/jobs",
        files={"file": ("v.mp4", b"\x00\x00\x00\x18ftypmp42" + b"\0" * 64, "video/mp4")},
        data={"task": "captions", "response_format": "[" * 200_000},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "json_too_deep"
    assert response.json()["error"]["param"] == "response_format"
