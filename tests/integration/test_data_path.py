"""The data path on the real app: frames stay in Ray's object store (only metadata and a
reference leave the extractor), a cached video is found by its digest alone, repeats reach the
replica holding the frames (two extractor replicas, the affinity router), and a second question
about a video reuses the engine's prefix cache."""

from __future__ import annotations

import hashlib
import pickle
import re
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import ray
from ray import serve

from deploy.core.messages import MediaKind, SamplingOptions, StoredFrames
from deploy.serving.affinity_router import affinity
from tests.integration.conftest import AFFINITY_EXTRACTORS, OLLAMA_ONLY_PREFIX
from tests.support.videos import write_h264


def _video(tmp_path: Path, name: str, frames: int = 30) -> bytes:
    # Each test its own video, so that its first request is a cache miss in every replica.
    return write_h264(tmp_path / f"{name}.mp4", frames, 10.0, (320, 240), gop=10).read_bytes()


def test_the_extractor_hands_out_a_reference_and_finds_a_repeat_by_its_digest(
    serve_url: str, tmp_path: Path
) -> None:
    del serve_url  # the app must be running
    video = _video(tmp_path, "stored")
    digest = hashlib.sha256(video).hexdigest()
    options = SamplingOptions(num_frames=6)
    extractor = affinity(serve.get_deployment_handle("FrameExtractor", "vidserve"), digest)

    assert extractor.lookup.remote(digest, options, MediaKind.VIDEO).result() is None
    stored: StoredFrames = extractor.extract.remote(
        video, digest, options, MediaKind.VIDEO, "file"
    ).result()
    assert isinstance(stored.pixels, ray.ObjectRef)
    frames = ray.get(stored.pixels)
    assert frames.shape == stored.meta.shape
    assert frames.shape[0] == 6
    # What crosses the ingress: the metadata (and a reference), a sliver of the pixels.
    assert len(pickle.dumps(stored.meta)) * 50 < frames.nbytes
    assert stored.frames_id

    again = extractor.lookup.remote(digest, options, MediaKind.VIDEO).result()
    assert again is not None
    assert again.meta.cached is True
    assert again.frames_id == stored.frames_id
    assert np.array_equal(ray.get(again.pixels), frames)
    # The bytes sent with look_up (the ingress's first sight of a video): found, not decoded.
    sent = extractor.extract.remote(
        video, digest, options, MediaKind.VIDEO, "file", look_up=True
    ).result()
    assert (sent.meta.cached, sent.frames_id) == (True, stored.frames_id)
    # Other options are other frames: not a hit.
    other = SamplingOptions(num_frames=5)
    assert extractor.lookup.remote(digest, other, MediaKind.VIDEO).result() is None


def test_repeats_reach_the_extractor_that_holds_the_frames(
    client: httpx.Client, tmp_path: Path
) -> None:
    status = serve.status().applications["vidserve-ollama"].deployments["FrameExtractor"]
    assert status.replica_states.get("RUNNING") == AFFINITY_EXTRACTORS
    cached = []
    for name in ("first", "second"):
        video = _video(tmp_path, f"affinity-{name}", frames=20 + len(name))
        for _ in range(10):
            response = client.post(
                f"{OLLAMA_ONLY_PREFIX}/v1/video/analyze",
                files={"file": ("clip.mp4", video, "video/mp4")},
                data={"prompt": "What happens?", "num_frames": "4"},
            )
            assert response.status_code == 200, response.text
            cached.append(response.json()["frames"]["cached"])
    # Each video decoded once, then nine hits: with two replicas and no affinity, about half
    # of the repeats would land on the replica without the frames.
    assert cached == ([False] + [True] * 9) * 2


def _prefix_cache_hits(metrics_port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if re.match(r"ray_vllm_prefix_cache_hits(_total)?\{", line):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_second_question_about_a_video_hits_the_engines_prefix_cache(
    client: httpx.Client, metrics_port: int, tmp_path: Path
) -> None:
    video = _video(tmp_path, "prefix")
    before = _prefix_cache_hits(metrics_port)
    prompt_tokens = []
    for question in ("What happens?", "What colour is it?"):
        response = client.post(
            "/v1/video/analyze",
            files={"file": ("clip.mp4", video, "video/mp4")},
            data={"prompt": question, "num_frames": "8", "max_tokens": "2"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["backend"] == "vllm"
        prompt_tokens.append(response.json()["usage"]["prompt_tokens"])
    # The second prompt shares the video's tokens with the first (most of the prompt: 8 frames
    # are about 250 tokens, the question a few): vLLM counts hits in whole 16-token blocks.
    shared = min(prompt_tokens) // 2
    deadline = time.monotonic() + 30  # Ray exports metrics every few seconds
    while time.monotonic() < deadline:
        hits = _prefix_cache_hits(metrics_port) - before
        if hits >= shared:
            break
        time.sleep(1)
    else:
        pytest.fail(f"prefix cache hits grew by {hits}, not by the {shared} shared tokens")
