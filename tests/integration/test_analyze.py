"""POST /v1/video/analyze against the real app: real Serve, real vLLM engine on the tiny model."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import cv2
import httpx
import jsonschema
import pytest

from tests.integration.conftest import TEST_MAX_UPLOAD_BYTES
from tests.support.videos import encode_index, write_h264, write_opencv

ANALYZE = "/v1/video/analyze"
FPS = 10.0
FRAMES = 40


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("videos") / "clip.mp4"
    return write_h264(path, FRAMES, FPS, (320, 240)).read_bytes()


def _post(client: httpx.Client, files: dict[str, object], **data: str) -> httpx.Response:
    return client.post(ANALYZE, files=files, data=data)


def _error(response: httpx.Response, status: int) -> dict[str, str]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, str] = body["error"]
    assert error["message"]
    assert error["type"]
    assert "code" in error
    return error


def test_video_question_gets_an_answer_with_frames_timings_and_usage(
    client: httpx.Client, video: bytes
) -> None:
    response = _post(client, {"file": ("clip.mp4", video, "video/mp4")}, prompt="What happens?")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {
        "answer", "model", "backend", "fallback", "frames", "speech", "timings", "usage"
    }  # fmt: skip
    # The generated clip has no sound: answered from its frames, the reply says why.
    assert body["speech"]["note"] == "the video has no audio track"
    assert body["model"] == "tiny-qwen2.5-vl"
    assert body["backend"] == "vllm"
    assert body["fallback"] is None
    assert response.headers["x-vidserve-backend"] == "vllm"
    # CPU profile: 8 frames by default, spread over 40 frames at 10 fps.
    assert body["frames"]["count"] == 8
    expected = [round(i / FPS, 6) for i in (0, 6, 11, 17, 22, 28, 33, 39)]
    assert body["frames"]["timestamps"] == pytest.approx(expected, abs=1e-3)
    timings = body["timings"]
    assert 0 < timings["extract_s"] <= timings["total_s"]
    assert 0 < timings["inference_s"] <= timings["total_s"]
    # 8 frames of 224x168 -> 4 merged frames x (16 x 12 patches / 4) = 192 video tokens.
    assert body["usage"]["prompt_tokens"] > 192
    assert body["usage"]["completion_tokens"] >= 1


def test_num_frames_and_fps_options(client: httpx.Client, video: bytes) -> None:
    response = _post(client, {"file": ("c.mp4", video)}, prompt="Describe.", num_frames="4")
    assert response.status_code == 200, response.text
    assert response.json()["frames"]["count"] == 4
    response = _post(client, {"file": ("c.mp4", video)}, prompt="Describe.", fps="2")
    assert response.status_code == 200, response.text
    assert response.json()["frames"]["timestamps"] == pytest.approx(
        [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5], abs=1e-3
    )


def test_image_request(client: httpx.Client) -> None:
    ok, png = cv2.imencode(".png", encode_index(77, 224, 224))
    assert ok
    response = _post(client, {"image": ("i.png", png.tobytes(), "image/png")}, prompt="What?")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["frames"] == {"count": 1, "timestamps": [0.0], "cached": False}
    # A 224x224 image is 64 visual tokens.
    assert body["usage"]["prompt_tokens"] > 64


SCHEMA = {
    "type": "object",
    "properties": {
        "summary": {"type": "string", "maxLength": 20},
        "count": {"enum": [0, 1, 2, 3]},
        "moving": {"type": "boolean"},
    },
    "required": ["summary", "count", "moving"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    "response_format",
    [SCHEMA, {"type": "json_schema", "json_schema": {"name": "scene", "schema": SCHEMA}}],
    ids=["bare-schema", "openai-style"],
)
def test_constrained_json_answer_matches_the_schema(
    client: httpx.Client, video: bytes, response_format: dict[str, object]
) -> None:
    response = _post(
        client,
        {"file": ("c.mp4", video)},
        prompt="Summarise as JSON.",
        response_format=json.dumps(response_format),
        max_tokens="200",
        temperature="0",
    )
    assert response.status_code == 200, response.text
    answer = json.loads(response.json()["answer"])
    jsonschema.validate(answer, SCHEMA)
    assert set(answer) == {"summary", "count", "moving"}


@pytest.mark.parametrize(
    ("files", "data", "status", "code"),
    [
        ({"prompt": (None, "What?")}, {}, 400, "missing_file"),
        ({"file": ("e.mp4", b"")}, {"prompt": "What?"}, 400, "empty_file"),
        ({"file": ("t.mp4", b"hello, I am text\n" * 50)}, {"prompt": "What?"}, 422,
         "unsupported_media"),
        ({"file": ("p.mp4", cv2.imencode(".png", encode_index(1, 64, 64))[1].tobytes())},
         {"prompt": "What?"}, 422, "unsupported_media"),
        ({"file": ("v.mp4", "VIDEO")}, {}, 400, "missing_prompt"),
        ({"file": ("v.mp4", "VIDEO")}, {"prompt": "What?", "frames": "8"}, 400, "unknown_field"),
        ({"file": ("v.mp4", "VIDEO")}, {"prompt": "What?", "num_frames": "999"}, 400,
         "out_of_range"),
        ({"file": ("v.mp4", "VIDEO")}, {"prompt": "What?", "num_frames": "two"}, 400,
         "invalid_value"),
        ({"file": ("v.mp4", "VIDEO")}, {"prompt": "What?", "fps": "0"}, 400, "out_of_range"),
        ({"file": ("v.mp4", "VIDEO")}, {"prompt": "What?", "temperature": "9"}, 400,
         "out_of_range"),
        ({"file": ("v.mp4", "VIDEO")}, {"prompt": "What?", "max_tokens": "100000"}, 400,
         "out_of_range"),
        ({"file": ("v.mp4", "VIDEO")}, {"prompt": "What?", "response_format": "{nope"}, 400,
         "invalid_json_schema"),
        ({"file": ("v.mp4", "VIDEO")},
         {"prompt": "What?", "response_format": '{"type": "no-such-type"}'}, 400,
         "invalid_json_schema"),
    ],
    ids=["no-file", "empty-file", "text-file", "image-as-video", "no-prompt", "unknown-option",
         "too-many-frames", "frames-not-a-number", "zero-fps", "temperature-out-of-range",
         "max-tokens-over-limit", "response-format-not-json", "response-format-bad-schema"],
)  # fmt: skip
def test_bad_input_is_a_clear_4xx(
    client: httpx.Client,
    video: bytes,
    files: dict[str, tuple[str | None, object]],
    data: dict[str, str],
    status: int,
    code: str,
) -> None:
    files = {k: (n, video if body == "VIDEO" else body) for k, (n, body) in files.items()}
    # (None, value) is a plain multipart field, so "no-file" still sends multipart.
    error = _error(client.post(ANALYZE, files=files, data=data), status)
    assert error["code"] == code


def test_truncated_video_is_a_422(client: httpx.Client, tmp_path: Path) -> None:
    data = write_opencv(tmp_path / "v.mp4", "mp4v", 30, 10.0, (64, 48)).read_bytes()
    response = _post(client, {"file": ("v.mp4", data[: len(data) // 2])}, prompt="What?")
    assert _error(response, 422)["code"] == "corrupt_media"


def test_prompt_longer_than_the_context_is_a_400(client: httpx.Client, video: bytes) -> None:
    prompt = "describe the scene and the colours " * 700  # ~24k chars, far over 4096 tokens
    error = _error(_post(client, {"file": ("v.mp4", video)}, prompt=prompt), 400)
    assert "maximum context length" in error["message"]
    assert error["code"] == "invalid_for_model"


def test_json_body_instead_of_multipart_is_a_400(client: httpx.Client) -> None:
    error = _error(client.post(ANALYZE, json={"prompt": "What?"}), 400)
    assert error["code"] == "unsupported_content_type"


def _chunks(total: int, size: int = 256 * 1024) -> Iterator[bytes]:
    boundary = b"--vidserve\r\n"
    yield boundary + b'Content-Disposition: form-data; name="prompt"\r\n\r\nWhat?\r\n'
    yield boundary + b'Content-Disposition: form-data; name="file"; filename="big.mp4"\r\n\r\n'
    sent = 0
    while sent < total:
        yield b"\0" * size
        sent += size
    yield b"\r\n--vidserve--\r\n"


def test_upload_over_the_limit_is_a_413_while_streaming(client: httpx.Client) -> None:
    response = client.post(
        ANALYZE,
        content=_chunks(3 * TEST_MAX_UPLOAD_BYTES),
        headers={"content-type": "multipart/form-data; boundary=vidserve"},
    )
    assert _error(response, 413)["code"] == "payload_too_large"


def test_declared_oversize_upload_is_refused_before_its_body(serve_url: str) -> None:
    """Only the headers are sent: the 413 must come back without the body."""
    url = urlparse(serve_url)
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(
            f"POST {ANALYZE} HTTP/1.1\r\nHost: {url.netloc}\r\n"
            "Content-Type: multipart/form-data; boundary=x\r\n"
            f"Content-Length: {50 * TEST_MAX_UPLOAD_BYTES}\r\n\r\n".encode()
        )
        head = sock.recv(65536).decode(errors="replace")
    assert head.startswith("HTTP/1.1 413"), head


def test_service_keeps_answering_after_bad_input(client: httpx.Client, video: bytes) -> None:
    for _ in range(3):
        _post(client, {"file": ("t.mp4", b"garbage" * 100)}, prompt="What?")
    response = _post(client, {"file": ("v.mp4", video)}, prompt="Still there?")
    assert response.status_code == 200, response.text


def test_health_and_readiness(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "alive"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "backends": {
            "vllm": {"ready": True, "model": "tiny-qwen2.5-vl", "circuit": "closed"},
            "ollama": {"ready": True, "model": "qwen2.5vl:7b", "circuit": "closed"},
        },
    }


def test_unknown_route_and_method_are_json_errors(client: httpx.Client) -> None:
    assert _error(client.get("/nope"), 404)["type"] == "not_found_error"
    assert _error(client.get(ANALYZE), 405)["type"] == "invalid_request_error"


def test_a_second_question_about_the_same_video_skips_decoding(
    client: httpx.Client, video: bytes
) -> None:
    asks = {"num_frames": "3", "start_s": "0.3", "strategy": "uniform"}
    first = _post(client, {"file": ("c.mp4", video)}, prompt="What?", **asks)
    second = _post(client, {"file": ("again.mp4", video)}, prompt="And now?", **asks)
    assert first.status_code == second.status_code == 200, second.text
    assert first.json()["frames"]["cached"] is False
    assert second.json()["frames"]["cached"] is True
    assert second.json()["frames"]["timestamps"] == first.json()["frames"]["timestamps"]


@pytest.mark.parametrize(
    ("options", "count"),
    [({"strategy": "keyframes"}, None), ({"strategy": "scene", "num_frames": "2"}, 2)],
)
def test_strategies_are_accepted(
    client: httpx.Client, video: bytes, options: dict[str, str], count: int | None
) -> None:
    response = _post(client, {"file": ("c.mp4", video)}, prompt="What?", **options)
    assert response.status_code == 200, response.text
    if count is not None:
        assert response.json()["frames"]["count"] == count


def test_an_unknown_strategy_is_a_400(client: httpx.Client, video: bytes) -> None:
    error = _error(_post(client, {"file": ("c.mp4", video)}, prompt="What?", strategy="best"), 400)
    assert error["code"] == "invalid_value"
    assert "uniform, fps, scene, keyframes" in error["message"]
