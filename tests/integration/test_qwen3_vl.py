"""Qwen3-VL sees each frame at its true time: vLLM's Qwen3-VL processor writes a timestamp
before each temporal patch (`<9.3 seconds>`, the mean time of its two frames), computed from
the metadata the frames come with. The real extractor samples a window of a video, the VLLM
replica's own functions build the engine's inputs, and the real engine (on a tiny random
Qwen3-VL built locally: deploy/dev/tiny_model.py --family qwen3-vl) renders the prompt; its
timestamps must be the extractor's (tests/support/engine_prompt.py, in its own process)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from deploy.dev.tiny_model import QWEN3_VL, ensure_tiny_model
from tests.support.engine_prompt import seen_by_engine
from tests.support.videos import write_h264


@pytest.fixture(scope="module")
def qwen3_vl() -> Path:
    cache = Path(os.environ.get("VIDSERVE_TEST_CACHE", Path.home() / ".cache" / "vidserve"))
    return ensure_tiny_model(cache / "tiny-qwen3-vl-test", family=QWEN3_VL)


def _patch_times(timestamps: list[float]) -> list[str]:
    """What Qwen3-VL writes for frames at these times: one per two frames (its temporal
    patch), their mean, to a tenth of a second."""
    padded = timestamps + timestamps[-1:] * (len(timestamps) % 2)
    return [f"<{(a + b) / 2:.1f} seconds>" for a, b in zip(padded[::2], padded[1::2], strict=True)]


def test_the_timestamps_in_the_engines_prompt_are_the_extractors(
    qwen3_vl: Path, tmp_path: Path
) -> None:
    video = write_h264(tmp_path / "twenty-seconds.mp4", 600, 30.0, (320, 240), gop=30)
    seen = seen_by_engine(qwen3_vl, video, "--frames", "6", "--start-s", "8", "--end-s", "16")
    times = seen["timestamps_s"]
    assert len(times) == 6
    assert all(8.0 <= t <= 16.0 for t in times), times  # the window's own times, not from 0
    written = re.findall(r"<[0-9.]+ seconds>", seen["prompt"])
    assert written == _patch_times(times)
    # Frames sized for Qwen3-VL's patches (16 x merge 2), read from the model's config.json.
    assert seen["patch_factor"] == 32
    height, width = seen["shape"][1:3]
    assert (height % 32, width % 32) == (0, 0)
