"""The app with Ollama as its only backend (`vidserve-ollama` at /ollama-only): no vLLM deployed.

Real Serve, real extractor, the real `ollama` client in the Ollama replica, talking to the
stand-in server; what the client sent is read back from the stand-in.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from deploy.config.settings import AppArgs
from tests.integration.conftest import OLLAMA_ONLY_MODEL, OLLAMA_ONLY_PREFIX, OLLAMA_ONLY_TIMEOUT_S
from tests.support.ollama_stub import OllamaStub, decode_images, prompt_eval_count
from tests.support.videos import write_h264

ANALYZE = f"{OLLAMA_ONLY_PREFIX}/v1/video/analyze"
READYZ = f"{OLLAMA_ONLY_PREFIX}/readyz"


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("videos") / "clip.mp4"
    return write_h264(path, 30, 10.0, (320, 240)).read_bytes()


def test_vllm_is_not_deployed_in_the_ollama_only_app(serve_url: str) -> None:
    from ray import serve

    deployments = serve.status().applications["vidserve-ollama"].deployments
    assert set(deployments) == {"Ingress", "FrameExtractor", "Ollama", "StreamIngest"}


def test_ollama_answers_with_the_frames_as_images(
    client: httpx.Client, stub: OllamaStub, video: bytes
) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    response = client.post(
        ANALYZE,
        files={"file": ("clip.mp4", video, "video/mp4")},
        data={
            "prompt": "What is shown?",
            "num_frames": "5",
            "max_tokens": "33",
            "temperature": "0.3",
            "response_format": json.dumps(schema),
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["backend"] == "ollama"
    assert response.headers["x-vidserve-backend"] == "ollama"
    assert body["model"] == OLLAMA_ONLY_MODEL
    assert body["fallback"] is None
    assert json.loads(body["answer"]) == {"answer": "a stand-in answer from ollama"}
    assert body["frames"]["count"] == 5
    (chat,) = stub.chats
    assert chat["model"] == OLLAMA_ONLY_MODEL
    assert chat["format"] == schema
    assert chat["options"]["num_predict"] == 33
    assert chat["options"]["temperature"] == 0.3
    assert chat["options"]["num_ctx"] == 8192
    images = decode_images(chat)
    assert len(images) == 5
    # Resized by the extractor to the pixel budget (sides multiples of 28), not by Ollama.
    height, width, _ = images[0].shape
    assert height % 28 == 0
    assert width % 28 == 0
    # What Ollama counted (the stand-in: its text and 100 per image), passed on unchanged.
    sent = [image for message in chat["messages"] for image in message.get("images") or []]
    counted = prompt_eval_count(chat["messages"], sent)
    assert counted > 500
    assert body["usage"] == {"prompt_tokens": counted, "completion_tokens": 7}


def test_slow_ollama_is_a_timeout_error_not_a_hang(
    client: httpx.Client, stub: OllamaStub, video: bytes
) -> None:
    stub.behaviour.delay_s = OLLAMA_ONLY_TIMEOUT_S + 5
    started = time.monotonic()
    response = client.post(ANALYZE, files={"file": ("c.mp4", video)}, data={"prompt": "Slow?"})
    elapsed = time.monotonic() - started
    assert response.status_code == 504, response.text
    error = response.json()["error"]
    assert error["type"] == "timeout_error"
    assert error["code"] == "ollama_timeout"
    assert "ollama" in error["backends"]
    assert elapsed < stub.behaviour.delay_s  # answered before the stand-in did


def test_ollama_down_is_a_503_that_says_where_it_looked(
    client: httpx.Client, stub: OllamaStub, video: bytes
) -> None:
    stub.stop()
    response = client.post(ANALYZE, files={"file": ("c.mp4", video)}, data={"prompt": "Up?"})
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "ollama_unreachable"
    assert f"not reachable at {stub.url}" in error["message"]
    ready = client.get(READYZ)
    assert ready.status_code == 503
    assert "ollama serve" in ready.json()["backends"]["ollama"]["reason"]
    # Failures open the circuit: requests are refused at once, naming the circuit's state.
    for _ in range(2):
        response = client.post(ANALYZE, files={"file": ("c.mp4", video)}, data={"prompt": "Up?"})
    assert response.status_code == 503
    assert "circuit open" in response.json()["error"]["message"]
    # Ollama comes back: the probe closes the circuit and requests are answered again.
    stub.restart()
    assert _answered_within(client, video, 30.0)


def _answered_within(client: httpx.Client, video: bytes, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = client.post(ANALYZE, files={"file": ("c.mp4", video)}, data={"prompt": "Up?"})
        if response.status_code == 200:
            return True
        time.sleep(1.0)
    return False


def test_readyz_says_when_ollama_lacks_the_model(client: httpx.Client, stub: OllamaStub) -> None:
    ollama = client.get(READYZ).json()["backends"]["ollama"]
    assert (ollama["ready"], ollama["model"]) == (True, OLLAMA_ONLY_MODEL)
    stub.behaviour.models = {"qwen2.5vl:7b": ("completion", "vision")}
    # /readyz answers from one check for http.readiness_cache_s: the next check says it.
    time.sleep(AppArgs().http.readiness_cache_s + 0.2)
    ready = client.get(READYZ)
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "not_ready"
    assert f"ollama pull {OLLAMA_ONLY_MODEL}" in body["backends"]["ollama"]["reason"]
