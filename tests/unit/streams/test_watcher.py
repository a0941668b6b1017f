"""The watcher of a StreamIngest replica, in process, on file-backed streams (a video played at
its own speed: the same decoder path as a camera, no socket): a model slower than the windows
never holds the decoder back (windows dropped and counted, every frame still decoded in real
time), and replicas that start together share the streams. The model is a stand-in here (the
real engine answers in tests/integration/test_streams.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from deploy.config.settings import AppArgs
from deploy.core.messages import InferenceRequest, InferenceResult
from deploy.jobs.store import open_store
from deploy.serving.backends import Routed
from deploy.streams.stream_spec import StreamSpec
from deploy.streams.stream_store import StreamStore
from deploy.streams.watcher import StreamWatcher
from tests.support.recorders import StreamMetricsRecorder
from tests.support.videos import write_h264

FPS = 10.0


class SlowModel:
    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.asked = 0

    async def answer(self, request: InferenceRequest) -> Routed[InferenceResult]:
        self.asked += 1
        await asyncio.sleep(self.delay_s)
        return Routed(InferenceResult("a caption", "stand-in", "vllm", 10, 2), None)


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return write_h264(tmp_path / "camera.mp4", 300, FPS, (160, 120), gop=10)  # 30 s


def _args(tmp_path: Path, **streams: object) -> AppArgs:
    return AppArgs.model_validate(
        {
            "jobs": {"data_dir": str(tmp_path / "data")},
            "url_fetch": {"local_dir": str(tmp_path)},
            "streams": {"schemes": ["file"], "claim_interval_s": 0.2, **streams},
        }
    )


def test_a_slow_model_drops_windows_and_never_slows_the_decoder(tmp_path: Path, clip: Path) -> None:
    args = _args(tmp_path, window_s=1.0, frames_per_window=1)
    store = StreamStore(open_store(args.store, args.jobs))
    store.create("s1", "", StreamSpec(url=f"file://{clip}"))
    model = SlowModel(delay_s=2.5)  # each window's caption takes 2.5 windows
    metrics = StreamMetricsRecorder()

    async def watch() -> float:
        watcher = StreamWatcher(store, model, args, "replica-a", metrics=metrics)  # type: ignore[arg-type]
        watcher.start()
        await asyncio.sleep(6.5)
        decoded = watcher.runners["s1"].frames_decoded
        await watcher.stop()
        return decoded

    started = time.monotonic()
    decoded = asyncio.run(watch())
    elapsed = time.monotonic() - started
    stream = store.get("s1")
    assert stream is not None
    assert stream.dropped >= 2, stream  # windows that found the model busy
    assert 1 <= stream.windows <= 3, stream  # one at the model at a time: 2.5 s each
    assert decoded >= 0.8 * FPS * (elapsed - 1.5), (decoded, elapsed)  # kept real time
    assert metrics.windows.count("dropped") == stream.dropped


def test_replicas_starting_together_share_the_streams(tmp_path: Path, clip: Path) -> None:
    args = _args(tmp_path)
    store = StreamStore(open_store(args.store, args.jobs))
    for i in range(4):
        store.create(f"s{i}", "", StreamSpec(url=f"file://{clip}"))

    async def share() -> tuple[list[str], list[str]]:
        model = SlowModel(delay_s=0.0)
        a = StreamWatcher(store, model, args, "replica-a", metrics=StreamMetricsRecorder())  # type: ignore[arg-type]
        b = StreamWatcher(store, model, args, "replica-b", metrics=StreamMetricsRecorder())  # type: ignore[arg-type]
        for _ in range(2):  # their ticks interleave, one stream taken a tick
            await a.tick()
            await b.tick()
        held = sorted(a.runners), sorted(b.runners)
        await a.stop()
        await b.stop()
        return held

    held_a, held_b = asyncio.run(share())
    assert len(held_a) == len(held_b) == 2
    assert sorted(held_a + held_b) == ["s0", "s1", "s2", "s3"]
