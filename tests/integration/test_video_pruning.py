"""llm.video_pruning_rate (vLLM's Efficient Video Sampling) on the real engine: the tiny
Qwen2.5-VL and Qwen3-VL answer with fewer prompt tokens at rate 0.5 than at 0, and Qwen3-VL
still writes every temporal patch's timestamp. On CPU this needs vidserve's fix-up of vLLM's CPU
runner (deploy/dev/cpu_fixes.py): without it the Qwen2.5-VL request dies in the engine (a shape
mismatch in the merged embeddings)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from deploy.dev.tiny_model import QWEN2_5_VL, QWEN3_VL, ensure_tiny_model
from tests.support.engine_prompt import seen_by_engine
from tests.support.videos import write_h264


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pruning")
    return write_h264(folder / "ten-seconds.mp4", 300, 30.0, (320, 240), gop=30)


@pytest.mark.parametrize("family", [QWEN2_5_VL, QWEN3_VL])
def test_pruning_half_the_video_tokens_shortens_the_prompt(family: str, video: Path) -> None:
    cache = Path(os.environ.get("VIDSERVE_TEST_CACHE", Path.home() / ".cache" / "vidserve"))
    model = ensure_tiny_model(cache / f"tiny-{family}-test", family=family)
    full = seen_by_engine(model, video, "--frames", "8")
    pruned = seen_by_engine(model, video, "--frames", "8", "--pruning-rate", "0.5")
    video_tokens = full["prompt"].count("<|video_pad|>")
    assert video_tokens > 0
    kept = pruned["prompt"].count("<|video_pad|>")
    assert kept == pytest.approx(video_tokens / 2, abs=video_tokens * 0.1)
    assert pruned["prompt_tokens"] < full["prompt_tokens"]
    if family == QWEN3_VL:
        stamps = re.findall(r"<[0-9.]+ seconds>", full["prompt"])
        assert stamps == re.findall(r"<[0-9.]+ seconds>", pruned["prompt"])
        assert len(stamps) == 4
