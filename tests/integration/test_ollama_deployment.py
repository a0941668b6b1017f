"""The Ollama deployment's class, driven by the real `ollama` client against the stand-in server.

What the client sends is read back from the stand-in: model, images (decoded), format, options.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from deploy.config.settings import OllamaSettings
from deploy.core.errors import BackendTimeout, ServiceUnavailable, UnprocessableInput
from deploy.core.messages import (
    Delta,
    FrameBatch,
    GenerationParams,
    InferenceRequest,
    MediaKind,
    Role,
    StoredFrames,
    Turn,
)
from deploy.ollama_deployment import OllamaServer
from tests.support.ollama_stub import TEXT, VISION, OllamaStub, decode_images, prompt_eval_count
from tests.support.ports import free_port


@pytest.fixture(scope="module")
def stub() -> Iterator[OllamaStub]:
    server = OllamaStub({"qwen2.5vl:7b": VISION, "qwen3:8b": TEXT, "mystery:1b": TEXT})
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _fresh(stub: OllamaStub) -> None:
    stub.reset()


def _server(stub_url: str, model: str = "qwen2.5vl:7b", **settings: Any) -> OllamaServer:
    async def build() -> OllamaServer:
        server = OllamaServer.__new__(OllamaServer)
        await server.__init__(OllamaSettings(host=stub_url, **settings), model)  # type: ignore[misc]
        return server

    return asyncio.run(build())


def _video(count: int = 3, height: int = 56, width: int = 84) -> StoredFrames:
    """Frames as the extractor hands them on (here with the pixels inline, not in Ray)."""
    frames = np.zeros((count, height, width, 3), np.uint8)
    for i in range(count):
        frames[i, :, : width // 2] = (40 * i, 200, 10)  # left half differs per frame
    batch = FrameBatch.of(
        kind=MediaKind.VIDEO,
        frames=frames,
        indices=list(range(0, 10 * count, 10)),
        timestamps_s=[float(i) for i in range(count)],
        source_fps=10.0,
        duration_s=float(count),
        source_width=width,
        source_height=height,
        total_frames=10 * count,
    )
    return StoredFrames.inline(batch)


def _ask(server: OllamaServer, media: StoredFrames | None, **params: Any) -> Any:
    request = InferenceRequest.ask(
        "What changes?", media, GenerationParams(max_tokens=64, **params)
    )
    return asyncio.run(server.answer(request))


def test_frames_go_to_api_chat_as_jpeg_images_with_the_options(stub: OllamaStub) -> None:
    server = _server(stub.url, num_ctx=4096, keep_alive="5m", options={"top_k": 20})
    result = _ask(server, _video(3), temperature=0.2)
    assert result.backend == "ollama"
    assert result.model == "qwen2.5vl:7b"
    assert result.text == "a stand-in answer from ollama"
    (chat,) = stub.chats
    # What Ollama counted (the stand-in: its text and 100 per image), passed on unchanged.
    sent = [image for message in chat["messages"] for image in message.get("images") or []]
    assert len(sent) == 3
    counted = prompt_eval_count(chat["messages"], sent)
    assert (result.prompt_tokens, result.completion_tokens) == (counted, 7)
    assert chat["model"] == "qwen2.5vl:7b"
    assert chat["stream"] is True  # one path for streamed and whole answers
    assert chat["keep_alive"] == "5m"
    assert chat["options"] == {"top_k": 20, "num_predict": 64, "num_ctx": 4096, "temperature": 0.2}
    message = chat["messages"][0]
    assert message["role"] == "user"
    assert message["content"].endswith("What changes?")
    assert "0.0s, 1.0s, 2.0s" in message["content"]
    images = decode_images(chat)
    assert len(images) == 3
    assert {image.shape for image in images} == {(56, 84, 3)}
    # The frames arrive in order and in RGB: frame i's left half is (40 i, 200, 10).
    for i, image in enumerate(images):
        assert np.abs(image[28, 10].astype(int) - (40 * i, 200, 10)).max() <= 8


def test_a_conversation_streams_with_its_options_and_frames_on_the_media_turn(
    stub: OllamaStub,
) -> None:
    server = _server(stub.url)
    request = InferenceRequest(
        turns=(
            Turn(Role.SYSTEM, "Be brief."),
            Turn(Role.USER, "What is this?", media=True),
            Turn(Role.ASSISTANT, "Bars."),
            Turn(Role.USER, "Which colour first?"),
        ),
        media=_video(2),
        params=GenerationParams(max_tokens=9, top_p=0.5, seed=7, stop=("END", "\n\n")),
    )

    async def collect() -> list[Delta]:
        return [delta async for delta in server.answer_stream(request)]

    deltas = asyncio.run(collect())
    assert "".join(d.text for d in deltas) == "a stand-in answer from ollama"
    assert len(deltas) > 2  # pieces, as they come
    assert [d.finish_reason for d in deltas[:-1]] == [None] * (len(deltas) - 1)
    assert (deltas[-1].finish_reason, deltas[-1].completion_tokens) == ("stop", 7)
    (chat,) = stub.chats
    assert [m["role"] for m in chat["messages"]] == ["system", "user", "assistant", "user"]
    assert [bool(m.get("images")) for m in chat["messages"]] == [False, True, False, False]
    assert chat["messages"][1]["content"].endswith("What is this?")
    assert chat["messages"][3]["content"] == "Which colour first?"
    assert chat["options"] == {
        "num_predict": 9,
        "num_ctx": 8192,
        "top_p": 0.5,
        "seed": 7,
        "stop": ["END", "\n\n"],
    }


def test_a_json_schema_becomes_ollamas_format(stub: OllamaStub) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    result = _ask(_server(stub.url), _video(1), json_schema=schema)
    assert stub.chats[0]["format"] == schema
    assert result.text == '{"answer": "a stand-in answer from ollama"}'


def _ready(server: OllamaServer) -> str:
    return asyncio.run(server.ready()).model_or_raise()


def test_ready_names_the_missing_model_and_the_fix(stub: OllamaStub) -> None:
    assert _ready(_server(stub.url)) == "qwen2.5vl:7b"
    with pytest.raises(ServiceUnavailable, match=r"ollama pull qwen2\.5vl:32b") as info:
        _ready(_server(stub.url, model="qwen2.5vl:32b"))
    assert info.value.code == "ollama_model_missing"


def test_a_server_that_is_down_is_logged_once_not_per_probe(
    stub: OllamaStub, caplog: pytest.LogCaptureFixture
) -> None:
    """Down: one warning with the reason, however many probes; back: one, with the reason it
    had been down. Probes answer a value: nothing is raised for Ray to log with a traceback."""
    caplog.set_level(logging.INFO, logger="ray.serve.vidserve.ollama")
    url = f"http://127.0.0.1:{free_port()}"
    server = _server(url)

    async def probe(times: int) -> list[str]:
        results = [await server.ready() for _ in range(times)]
        return [r.error.code if r.error else r.model for r in results]

    assert asyncio.run(probe(5)) == ["ollama_unreachable"] * 5
    server._client = _server(stub.url)._client  # the server comes up
    assert asyncio.run(probe(3)) == ["qwen2.5vl:7b"] * 3
    logged = [r.getMessage() for r in caplog.records if r.name == "ray.serve.vidserve.ollama"]
    assert len(logged) == 2, logged
    assert "is down" in logged[0]
    assert "not reachable at " + url in logged[0]
    assert "is back after" in logged[1]
    assert "not reachable" in logged[1]
    assert not any(r.exc_info for r in caplog.records)


def test_a_missing_model_at_request_time_is_a_503_with_the_fix(stub: OllamaStub) -> None:
    with pytest.raises(ServiceUnavailable, match="ollama pull"):
        _ask(_server(stub.url, model="qwen2.5vl:32b"), _video(1))


def test_an_unreachable_server_is_a_503_naming_the_host() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    server = _server(url)
    with pytest.raises(ServiceUnavailable, match="not reachable at " + url) as info:
        _ready(server)
    assert info.value.code == "ollama_unreachable"
    with pytest.raises(ServiceUnavailable, match="not reachable at " + url) as info:
        asyncio.run(server.answer(_request_with(_video(1))))
    assert info.value.code == "ollama_unreachable"


def _request_with(media: StoredFrames) -> InferenceRequest:
    return InferenceRequest.ask("q", media, GenerationParams(max_tokens=4))


def test_a_slow_server_is_a_timeout_not_a_hang(stub: OllamaStub) -> None:
    stub.behaviour.delay_s = 3.0
    server = _server(stub.url, request_timeout_s=0.5)
    with pytest.raises(BackendTimeout, match=r"within 0\.5s"):
        _ask(server, _video(1))


@pytest.mark.parametrize("model", ["qwen3:8b", "mystery:1b"])
def test_a_text_only_model_refuses_media_with_a_422_naming_a_vision_model(
    stub: OllamaStub, model: str
) -> None:
    """qwen3:8b is text-only per the catalog; mystery:1b per the server's /api/show."""
    server = _server(stub.url, model=model)
    with pytest.raises(UnprocessableInput, match=r"cannot take images.*qwen2\.5vl:7b"):
        _ask(server, _video(1))
    assert stub.chats == []
    assert _ask(server, None).text == "a stand-in answer from ollama"  # text still works


def test_pull_on_start_pulls_and_logs_progress(
    stub: OllamaStub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ray.serve.vidserve.ollama")
    server = _server(stub.url, model="qwen2.5vl:3b", pull_on_start=True)
    assert _ready(server) == "qwen2.5vl:3b"
    logged = [r.getMessage() for r in caplog.records]
    assert any("pull qwen2.5vl:3b: success" in line for line in logged), logged
    assert any(line.startswith("pulling qwen2.5vl:3b") for line in logged), logged
