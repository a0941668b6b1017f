"""The data path through the ingress: an upload is hashed as it streams in, a repeat sends the
extractor only its digest, URLs are downloaded by the extractor, each video's calls carry its
affinity key, and the engine gets the frames as the extractor stored them.

The real Starlette app of the ingress (deploy/ingress.py), driven over HTTP by Starlette's test
client. Behind it, a stand-in for the FrameExtractor's handle that keeps the deployment's
contract (lookup / extract / extract_url / from_images, `.options(multiplexed_model_id=...)`,
responses that are awaited and cancellable) and decodes with the real `deploy.video.extract`;
the real extractor replica, on Ray, is tested in tests/integration/test_data_path.py.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import pytest
from starlette.testclient import TestClient

from deploy.api.auth import ApiKeys
from deploy.config.settings import AppArgs
from deploy.core.messages import (
    InferenceRequest,
    InferenceResult,
    MediaKind,
    SamplingOptions,
    StoredFrames,
)
from deploy.ingress import build_http_app
from deploy.serving.affinity_router import url_key
from deploy.serving.backends import BackendRouter, OpenedStream
from deploy.serving.pipeline import AnalyzePipeline
from deploy.video import extract
from deploy.video.cache import cache_key
from tests.support.recorders import MetricsRecorder
from tests.support.videos import write_h264

ARGS = AppArgs.model_validate(
    {
        "backends": {"primary": "ollama", "fallback": "none"},
        "extraction": {"max_pixels": 224 * 224, "min_pixels": 56 * 56},
    }
)


class _Response:
    """A DeploymentResponse's surface: awaited for the result, cancellable."""

    def __init__(self, work: Coroutine[Any, Any, Any]) -> None:
        self._work = work

    def __await__(self) -> Any:
        return self._work.__await__()

    def cancel(self) -> None:
        self._work.close()


@dataclass
class FakeExtractor:
    url_video: bytes  # what a URL "downloads" to
    calls: list[tuple[str, str, tuple[Any, ...]]] = field(default_factory=list)
    cache: dict[str, StoredFrames] = field(default_factory=dict)
    key: str = ""

    def options(self, multiplexed_model_id: str = "") -> FakeExtractor:
        return FakeExtractor(self.url_video, self.calls, self.cache, multiplexed_model_id)

    def __getattr__(self, method: str) -> Any:
        if method not in ("lookup", "extract", "extract_url", "from_images"):
            raise AttributeError(method)
        outer = self

        class _Method:
            @staticmethod
            def remote(*args: Any, **kwargs: Any) -> _Response:
                outer.calls.append((method, outer.key, args + tuple(kwargs.items())))
                return _Response(getattr(outer, f"_{method}")(*args, **kwargs))

        return _Method()

    async def _lookup(
        self, digest: str, options: SamplingOptions, kind: MediaKind
    ) -> StoredFrames | None:
        stored = self.cache.get(cache_key(digest, options, kind))
        if stored is None:
            return None
        return dataclasses.replace(stored, meta=dataclasses.replace(stored.meta, cached=True))

    async def _extract(
        self,
        data: bytes,
        digest: str,
        options: SamplingOptions,
        kind: MediaKind,
        param: str,
        look_up: bool = False,
    ) -> StoredFrames:
        assert digest == hashlib.sha256(data).hexdigest()
        cached = await self._lookup(digest, options, kind) if look_up else None
        if cached is not None:
            return cached
        batch = extract(data, options, ARGS.extraction, kind, param)
        stored = StoredFrames.inline(batch, "frames-id")
        self.cache[cache_key(digest, options, kind)] = stored
        return stored

    async def _extract_url(
        self, url: str, options: SamplingOptions, kind: MediaKind | None, param: str
    ) -> StoredFrames:
        return StoredFrames.inline(extract(self.url_video, options, ARGS.extraction))


@dataclass
class RecordingBackend:
    name: str = "ollama"
    seen: list[tuple[int, str]] = field(default_factory=list)

    async def answer(self, request: InferenceRequest) -> InferenceResult:
        assert request.media is not None
        frames = await request.media.frames()
        self.seen.append((int(frames.shape[0]), request.media.frames_id))
        return InferenceResult("ok", "m", self.name, 1, 1)

    async def open_stream(self, request: InferenceRequest) -> OpenedStream:
        raise AssertionError("not streamed here")

    async def ready(self, timeout_s: float) -> str:
        return "m"


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("v") / "clip.mp4"
    return write_h264(path, 20, 10.0, (160, 120), gop=5).read_bytes()


def _client(video: bytes) -> tuple[TestClient, FakeExtractor, RecordingBackend]:
    extractor = FakeExtractor(video)
    backend = RecordingBackend()
    router = BackendRouter([backend], ARGS.backends.circuit_breaker)
    pipeline = AnalyzePipeline(extractor, router, ARGS)  # type: ignore[arg-type]
    app = build_http_app(pipeline, ARGS, ApiKeys([]), MetricsRecorder())
    return TestClient(app), extractor, backend


def _summary(extractor: FakeExtractor) -> list[tuple[str, str, bool, bool]]:
    """(method, affinity key, whether video bytes were sent, whether the extractor was asked to
    look in its cache first) of each extractor call."""
    return [
        (
            method,
            key,
            any(isinstance(a, bytes) for a in args),
            ("look_up", True) in args,
        )
        for method, key, args in extractor.calls
    ]


def test_an_upload_is_hashed_as_it_arrives_and_a_repeat_sends_only_its_digest(
    video: bytes,
) -> None:
    client, extractor, backend = _client(video)
    digest = hashlib.sha256(video).hexdigest()
    for _ in range(3):
        response = client.post(
            "/v1/video/analyze",
            files={"file": ("clip.mp4", video, "video/mp4")},
            data={"prompt": "What?", "num_frames": "4"},
        )
        assert response.status_code == 200, response.text
    # The first time: the bytes at once (one call; the replica looks in its cache itself).
    assert _summary(extractor) == [
        ("extract", digest, True, True),
        ("lookup", digest, False, False),
        ("lookup", digest, False, False),
    ]
    assert backend.seen == [(4, "frames-id")] * 3


def test_a_data_url_is_hashed_once_and_a_repeat_sends_only_its_digest(video: bytes) -> None:
    client, extractor, _ = _client(video)
    url = "data:video/mp4;base64," + base64.b64encode(video).decode()
    body = {
        "model": ARGS.model_of(ARGS.backends.primary),
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "video_url", "video_url": {"url": url}},
                    {"type": "text", "text": "What?"},
                ],
            }
        ],
    }
    answers = [client.post("/v1/chat/completions", json=body) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    second = answers[1].json()
    assert second["object"] == "chat.completion"
    assert second["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "ok"},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ]
    assert second["usage"] == {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    assert second["vidserve"]["frames"]["cached"] is True
    digest = hashlib.sha256(video).hexdigest()
    assert _summary(extractor) == [
        ("extract", digest, True, True),
        ("lookup", digest, False, False),
    ]


def test_a_url_is_downloaded_by_the_extractor_reached_by_the_urls_key(video: bytes) -> None:
    client, extractor, backend = _client(video)
    # Loopback, nothing listening: had the ingress tried to fetch it, the SSRF guard would
    # have refused it (400), and nothing would have answered.
    url = "http://127.0.0.1:9/clip.mp4"
    form = {"url": (None, url), "prompt": (None, "What?")}
    response = client.post("/v1/video/analyze", files=form)
    assert response.status_code == 200, response.text
    ((method, key, args),) = extractor.calls
    assert (method, key, args[0]) == ("extract_url", url_key(url), url)
    assert len(backend.seen) == 1


def test_an_image_in_the_file_field_is_told_to_use_the_image_field(video: bytes) -> None:
    client, _, _ = _client(video)
    png = cv2.imencode(".png", np.zeros((32, 32, 3), np.uint8))[1].tobytes()
    response = client.post(
        "/v1/video/analyze", files={"file": ("x.png", png)}, data={"prompt": "What?"}
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert (error["code"], error["param"], error["found"]) == ("unsupported_media", "file", "image")
    assert error["message"] == (
        "file holds a png image, not a video; send it as the 'image' field instead"
    )


def _upload(client: TestClient, video: bytes, frames: int) -> None:
    response = client.post(
        "/v1/video/analyze",
        files={"file": ("clip.mp4", video, "video/mp4")},
        data={"prompt": "What?", "num_frames": str(frames)},
    )
    assert response.status_code == 200, response.text


def test_a_repeat_the_extractor_lost_is_sent_again_and_what_was_sent_is_bounded(
    video: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("deploy.serving.pipeline.SENT_REMEMBERED", 2)
    client, extractor, backend = _client(video)
    digest = hashlib.sha256(video).hexdigest()
    _upload(client, video, 4)
    extractor.cache.clear()  # the replica restarted, or its cache let the frames go
    _upload(client, video, 4)  # looked up (sent before), missed: the bytes follow
    _upload(client, video, 3)  # other options are other frames: sent at once
    _upload(client, video, 2)  # a third key: the ingress forgets the first (4 frames)
    _upload(client, video, 4)  # so this goes with its bytes again, and hits in the replica
    assert _summary(extractor) == [
        ("extract", digest, True, True),
        ("lookup", digest, False, False),
        ("extract", digest, True, False),
        ("extract", digest, True, True),
        ("extract", digest, True, True),
        ("extract", digest, True, True),
    ]
    assert [frames for frames, _ in backend.seen] == [4, 4, 3, 2, 4]
