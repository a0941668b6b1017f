"""A text-only model refuses video and images with a 422 before anything is decoded.

The real Starlette app of the ingress, driven over HTTP by Starlette's test client; the
extractor and backends are never reached (their handles are absent), which is the point.
"""

from __future__ import annotations

import cv2
import pytest
from starlette.testclient import TestClient

from deploy.api.auth import ApiKeys
from deploy.config.settings import AppArgs
from deploy.ingress import build_http_app
from deploy.serving.backends import BackendRouter
from deploy.serving.pipeline import AnalyzePipeline
from tests.support.recorders import MetricsRecorder
from tests.support.videos import encode_index


def _client(args: AppArgs) -> TestClient:
    router = BackendRouter([_Unreachable()], args.backends.circuit_breaker)
    pipeline = AnalyzePipeline(extractor=None, router=router, args=args)  # type: ignore[arg-type]
    return TestClient(build_http_app(pipeline, args, ApiKeys([]), MetricsRecorder()))


class _Unreachable:
    name = "never"

    async def answer(self, request: object) -> object:
        raise AssertionError("a text-only model must refuse before inference")

    async def ready(self, timeout_s: float) -> str:
        raise AssertionError("not asked")


@pytest.mark.parametrize(
    ("args", "model", "suggestion"),
    [
        ({"llm": {"model": "Qwen/Qwen3-8B"}}, "Qwen/Qwen3-8B", "Qwen/Qwen2.5-VL-7B-Instruct"),
        (
            {
                "backends": {"primary": "ollama", "fallback": "none"},
                "ollama": {"model": "qwen3:8b"},
            },
            "qwen3:8b",
            "qwen2.5vl:7b",
        ),
    ],
)
def test_text_only_model_gets_a_422_naming_a_vision_model(
    args: dict[str, object], model: str, suggestion: str
) -> None:
    ok, png = cv2.imencode(".png", encode_index(3, 64, 64))
    assert ok
    response = _client(AppArgs.model_validate(args)).post(
        "/v1/video/analyze",
        files={"image": ("i.png", png.tobytes(), "image/png")},
        data={"prompt": "What is this?"},
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "model_cannot_see"
    assert model in error["message"]
    assert suggestion in error["message"]
    assert "cannot take images" in error["message"]
