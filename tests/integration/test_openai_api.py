"""The OpenAI-compatible API, driven by the official `openai` SDK, unmodified, against the real
app (real Serve, the real vLLM engine on the tiny model; the Ollama stand-in for the
ollama-only app). The tiny model's words mean nothing; what is checked is the protocol: shapes,
streaming, usage, structured output, the frames that reached the engine, and the errors.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import cv2
import httpx
import jsonschema
import openai
import pytest
from openai import OpenAI
from pytest_httpserver import HTTPServer

from tests.integration.conftest import (
    CONFIG_KEY,
    FILE_KEY,
    OLLAMA_ONLY_MODEL,
    OLLAMA_ONLY_PREFIX,
    TEST_MAX_UPLOAD_BYTES,
    VIDEO_FPS,
    VIDEO_FRAMES,
    Media,
)
from tests.support.ollama_stub import OllamaStub, decode_images
from tests.support.videos import decode_index, encode_index

MODEL = "tiny-qwen2.5-vl"
SCHEMA = {
    "type": "object",
    "properties": {"summary": {"type": "string", "maxLength": 20}, "count": {"enum": [1, 2, 3]}},
    "required": ["summary", "count"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def sdk(serve_url: str) -> OpenAI:
    return OpenAI(base_url=f"{serve_url}/v1", api_key="unused", max_retries=0, timeout=180)


@pytest.fixture(scope="module")
def ollama_sdk(serve_url: str) -> OpenAI:
    return OpenAI(
        base_url=f"{serve_url}{OLLAMA_ONLY_PREFIX}/v1", api_key=FILE_KEY, max_retries=0, timeout=60
    )


def _video_turn(url: str, text: str = "What happens?") -> dict[str, Any]:
    return {
        "role": "user",
        "content": [
            {"type": "video_url", "video_url": {"url": url}},
            {"type": "text", "text": text},
        ],
    }


def _data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _vidserve(completion: Any) -> dict[str, Any]:
    extra: dict[str, Any] = completion.model_extra["vidserve"]
    return extra


def test_models_lists_what_is_served(sdk: OpenAI, ollama_sdk: OpenAI) -> None:
    assert [m.id for m in sdk.models.list()] == [MODEL, "qwen2.5vl:7b"]
    assert [m.id for m in ollama_sdk.models.list()] == [OLLAMA_ONLY_MODEL]


def test_a_question_without_media_is_answered_too(sdk: OpenAI) -> None:
    completion = sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hi."}], max_tokens=3
    )
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 3
    assert "frames" not in _vidserve(completion)


def test_a_video_by_url_gets_an_answer(sdk: OpenAI, media_server: HTTPServer) -> None:
    completion = sdk.chat.completions.create(
        model=MODEL,
        messages=[_video_turn(media_server.url_for("/media/clip"))],  # type: ignore[list-item]
        max_tokens=6,
        temperature=0,
        extra_body={"video_options": {"num_frames": 4}},
    )
    assert completion.object == "chat.completion"
    assert completion.model == MODEL
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str)
    assert choice.finish_reason in {"stop", "length"}
    usage = completion.usage
    assert usage is not None
    assert 1 <= usage.completion_tokens <= 6
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    frames = _vidserve(completion)["frames"]
    assert frames["count"] == 4
    assert frames["timestamps"][-1] == pytest.approx((VIDEO_FRAMES - 1) / VIDEO_FPS)
    assert _vidserve(completion)["backend"] == "vllm"


def test_a_video_as_a_data_url_streams_the_same_answer_with_usage(
    sdk: OpenAI, media: Media
) -> None:
    ask: dict[str, Any] = {
        "model": MODEL,
        "messages": [_video_turn(_data_url("video/mp4", media.video))],
        "max_tokens": 12,
        "temperature": 0,
        "seed": 1,
        "extra_body": {"video_options": {"num_frames": 2}},
    }
    whole = sdk.chat.completions.create(**ask)
    chunks = list(
        sdk.chat.completions.create(**ask, stream=True, stream_options={"include_usage": True})
    )
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content  # greedy: the same tokens either way
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == whole.choices[0].finish_reason
    assert all(f is None for f in finishes[:-1])
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert whole.usage is not None
    assert last.usage.completion_tokens == whole.usage.completion_tokens
    assert last.usage.prompt_tokens == whole.usage.prompt_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_streaming_without_include_usage_has_no_usage_chunk(sdk: OpenAI, media: Media) -> None:
    stream = sdk.chat.completions.create(
        model=MODEL,
        messages=[_video_turn(_data_url("video/mp4", media.video))],  # type: ignore[list-item]
        max_tokens=3,
        stream=True,
    )
    chunks = list(stream)
    assert all(c.choices for c in chunks)
    assert chunks[-1].choices[0].finish_reason in {"stop", "length"}


def test_raw_stream_is_server_sent_events_ending_with_done(serve_url: str, media: Media) -> None:
    body = {
        "model": MODEL,
        "messages": [_video_turn(_data_url("video/mp4", media.video))],
        "max_tokens": 3,
        "stream": True,
    }
    with httpx.stream("POST", f"{serve_url}/v1/chat/completions", json=body, timeout=120) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["x-vidserve-backend"] == "vllm"
        events = [line for line in r.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[-2][6:])["choices"][0]["finish_reason"] in {"stop", "length"}


def test_a_video_as_a_list_of_frames(sdk: OpenAI) -> None:
    frames = [cv2.imencode(".jpg", encode_index(i, 112, 112))[1].tobytes() for i in range(5)]
    url = "data:video/jpeg;base64," + ",".join(base64.b64encode(f).decode() for f in frames)
    completion = sdk.chat.completions.create(
        model=MODEL,
        messages=[_video_turn(url)],
        max_tokens=2,  # type: ignore[list-item]
    )
    assert _vidserve(completion)["frames"]["count"] == 5
    assert _vidserve(completion)["frames"]["timestamps"] == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_video_options_choose_the_strategy(sdk: OpenAI, media_server: HTTPServer) -> None:
    completion = sdk.chat.completions.create(
        model=MODEL,
        messages=[_video_turn(media_server.url_for("/media/clip"))],  # type: ignore[list-item]
        max_tokens=2,
        extra_body={"video_options": {"strategy": "keyframes", "num_frames": 2}},
    )
    frames = _vidserve(completion)["frames"]
    # The clip has keyframes at 0, 1, 2 and 3 s; two of them, spread out.
    assert frames["count"] == 2
    assert frames["timestamps"][0] == 0.0
    assert frames["timestamps"][1] in (2.0, 3.0)


def test_an_image_as_a_data_url(sdk: OpenAI, media: Media) -> None:
    completion = sdk.chat.completions.create(
        model=MODEL,
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "image_url",
                        "image_url": {"url": _data_url("image/png", media.image)},
                    },
                    {"type": "text", "text": "What is it?"},
                ],
            }
        ],
        max_tokens=2,
    )
    assert _vidserve(completion)["frames"]["count"] == 1
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 64  # a 224x224 image is 64 visual tokens


def test_structured_output_follows_the_json_schema(sdk: OpenAI, media: Media) -> None:
    completion = sdk.chat.completions.create(
        model=MODEL,
        messages=[_video_turn(_data_url("video/mp4", media.video), "Summarise as JSON.")],  # type: ignore[list-item]
        max_tokens=200,
        temperature=0,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "scene", "schema": SCHEMA, "strict": True},
        },
    )
    answer = json.loads(completion.choices[0].message.content or "")
    jsonschema.validate(answer, SCHEMA)


def test_several_turns_with_a_system_prompt(sdk: OpenAI, media_server: HTTPServer) -> None:
    first = [
        {"role": "system", "content": "You describe videos."},
        _video_turn(media_server.url_for("/media/clip")),
    ]
    later = [
        *first,
        {"role": "assistant", "content": "Squares blink."},
        {"role": "user", "content": "How many of them?"},
    ]
    options: dict[str, Any] = {"max_tokens": 2, "extra_body": {"video_options": {"num_frames": 2}}}
    one = sdk.chat.completions.create(model=MODEL, messages=first, **options)
    three = sdk.chat.completions.create(model=MODEL, messages=later, **options)
    assert one.usage is not None
    assert three.usage is not None
    # The same video and system prompt, plus two more turns rendered by the chat template.
    assert three.usage.prompt_tokens > one.usage.prompt_tokens + 8


def test_turns_and_options_reach_ollama_and_it_streams(
    ollama_sdk: OpenAI, stub: OllamaStub, media: Media
) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        _video_turn(_data_url("video/mp4", media.video), "What is shown?"),
        {"role": "assistant", "content": "Squares."},
        {"role": "user", "content": "And then?"},
    ]
    stream = ollama_sdk.chat.completions.create(
        model=OLLAMA_ONLY_MODEL,
        messages=messages,  # type: ignore[arg-type]
        max_completion_tokens=20,
        temperature=0.5,
        top_p=0.9,
        seed=3,
        stop=["END"],
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"video_options": {"num_frames": 3}},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "a stand-in answer from ollama"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 2
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 7
    (chat,) = stub.chats
    assert [m["role"] for m in chat["messages"]] == ["system", "user", "assistant", "user"]
    assert chat["options"] | {"num_ctx": None} == {
        "num_predict": 20,
        "temperature": 0.5,
        "top_p": 0.9,
        "seed": 3,
        "stop": ["END"],
        "num_ctx": None,
    }
    frames = decode_images(chat)
    assert [decode_index(f) for f in frames] == [0, 20, 39]


@pytest.mark.parametrize(
    ("change", "error", "status", "code"),
    [
        ({"model": "gpt-4o"}, openai.NotFoundError, 404, "model_not_found"),
        ({"extra_body": {"frames": 8}}, openai.BadRequestError, 400, "unknown_parameter"),
        ({"temperature": 7}, openai.BadRequestError, 400, "invalid_value"),
        ({"max_tokens": 10**6}, openai.BadRequestError, 400, "out_of_range"),
        ({"n": 2}, openai.BadRequestError, 400, "invalid_value"),
        ({"extra_body": {"video_options": {"num_frames": 999}}}, openai.BadRequestError, 400,
         "out_of_range"),
        ({"extra_body": {"video_options": {"start_s": 9, "end_s": 3}}}, openai.BadRequestError,
         400, "out_of_range"),
        ({"extra_body": {"video_options": {"start_s": 500}}}, openai.UnprocessableEntityError,
         422, "out_of_range"),
        ({"messages": [_video_turn("data:video/mp4;base64,@@@")]}, openai.BadRequestError, 400,
         "invalid_data_url"),
        ({"messages": [_video_turn(_data_url("video/mp4", b"plain text, not a video" * 9))]},
         openai.UnprocessableEntityError, 422, "unsupported_media"),
        ({"messages": [_video_turn("data:video/mp4;base64,AAAA"), _video_turn("data:,")]},
         openai.BadRequestError, 400, "too_many_media"),
        ({"messages": [{"role": "assistant", "content": "Hi"}]}, openai.BadRequestError, 400,
         "invalid_value"),
    ],
    ids=["unknown-model", "unknown-parameter", "temperature", "max-tokens", "n", "num-frames",
         "window-backwards", "window-past-the-end", "bad-base64", "not-a-video", "two-videos",
         "last-turn-not-user"],
)  # fmt: skip
def test_errors_are_the_sdks_own_exceptions(
    sdk: OpenAI,
    media: Media,
    change: dict[str, Any],
    error: type[openai.APIStatusError],
    status: int,
    code: str,
) -> None:
    ask: dict[str, Any] = {
        "model": MODEL,
        "messages": [_video_turn(_data_url("video/mp4", media.video))],
        "max_tokens": 2,
    }
    with pytest.raises(error) as raised:
        sdk.chat.completions.create(**(ask | change))
    assert raised.value.status_code == status
    assert raised.value.code == code, raised.value.message


def test_a_body_over_the_limit_is_a_413(sdk: OpenAI) -> None:
    huge = "data:video/mp4;base64," + "A" * (2 * TEST_MAX_UPLOAD_BYTES)
    with pytest.raises(openai.APIStatusError) as raised:
        sdk.chat.completions.create(model=MODEL, messages=[_video_turn(huge)])  # type: ignore[list-item]
    assert raised.value.status_code == 413


@pytest.mark.parametrize("key", [CONFIG_KEY, FILE_KEY])
def test_keys_from_the_config_and_the_keys_file_are_accepted(serve_url: str, key: str) -> None:
    client = OpenAI(base_url=f"{serve_url}{OLLAMA_ONLY_PREFIX}/v1", api_key=key, max_retries=0)
    assert [m.id for m in client.models.list()] == [OLLAMA_ONLY_MODEL]


@pytest.mark.parametrize("key", ["wrong-key-of-enough-length", CONFIG_KEY[:-1], CONFIG_KEY + "x"])
def test_a_wrong_or_missing_key_is_a_401(serve_url: str, key: str) -> None:
    client = OpenAI(base_url=f"{serve_url}{OLLAMA_ONLY_PREFIX}/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as raised:
        client.models.list()
    assert raised.value.status_code == 401
    assert raised.value.code in {"invalid_api_key", "missing_api_key"}


def test_without_a_header_every_route_but_health_is_a_401(serve_url: str) -> None:
    base = f"{serve_url}{OLLAMA_ONLY_PREFIX}"
    for method, path in [("GET", "/v1/models"), ("POST", "/v1/chat/completions"),
                         ("POST", "/v1/video/analyze"), ("GET", "/no-such-route")]:  # fmt: skip
        response = httpx.request(method, f"{base}{path}", timeout=30)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["code"] == "missing_api_key"
    assert httpx.get(f"{base}/healthz", timeout=30).status_code == 200
    assert httpx.get(f"{base}/readyz", timeout=30).status_code in {200, 503}
