"""The vLLM replica's pure functions: the conversation its chat template renders, the engine's
multimodal inputs (with the frames' UUID for vLLM's caches) and the sampling parameters."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from vllm.sampling_params import RequestOutputKind

from deploy.core.messages import (
    FrameBatch,
    GenerationParams,
    InferenceRequest,
    MediaKind,
    Role,
    StoredFrames,
    Turn,
)
from deploy.llm_deployment import chat_messages, engine_inputs, sampling_params


def _stored(kind: MediaKind = MediaKind.VIDEO, count: int = 4) -> StoredFrames:
    frames = np.zeros((count, 28, 56, 3), np.uint8)
    batch = FrameBatch.of(
        frames,
        kind=kind,
        indices=list(range(0, 5 * count, 5)),
        timestamps_s=[i * 0.5 for i in range(count)],
        source_fps=10.0,
        duration_s=2.0,
        source_width=56,
        source_height=28,
        total_frames=5 * count,
    )
    return StoredFrames.inline(batch, "frames-1")


def test_the_media_opens_its_turn_before_the_question_so_repeats_share_a_prefix() -> None:
    request = InferenceRequest(
        turns=(
            Turn(Role.SYSTEM, "Be brief."),
            Turn(Role.USER, "What happens?", media=True),
            Turn(Role.ASSISTANT, "A bar moves."),
            Turn(Role.USER, "Which way?"),
        ),
        media=_stored(),
        params=GenerationParams(max_tokens=8),
    )
    assert chat_messages(request) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happens?"}]},
        {"role": "assistant", "content": "A bar moves."},
        {"role": "user", "content": "Which way?"},
    ]


def test_a_video_goes_in_with_its_metadata_and_its_frames_id_as_the_items_uuid() -> None:
    stored = _stored()
    frames = np.asarray(stored.pixels)
    inputs = engine_inputs("<prompt>", stored.meta, frames, stored.frames_id)
    assert inputs["prompt"] == "<prompt>"
    video, metadata = inputs["multi_modal_data"]["video"]
    assert video is frames
    assert metadata == {
        "total_num_frames": 20,
        "fps": 10.0,
        "duration": 2.0,
        "frames_indices": [0, 5, 10, 15],
        "video_backend": "opencv",
        "do_sample_frames": False,
    }
    assert inputs["multi_modal_uuids"] == {"video": ["frames-1"]}


def test_an_image_is_its_one_frame_and_a_frame_list_lets_vllm_hash_it() -> None:
    stored = _stored(MediaKind.IMAGE, count=1)
    frames = np.asarray(stored.pixels)
    inputs = engine_inputs("p", stored.meta, frames, "")
    assert np.array_equal(inputs["multi_modal_data"]["image"], frames[0])
    assert inputs["multi_modal_data"]["image"].shape == (28, 56, 3)
    assert "multi_modal_uuids" not in inputs
    assert engine_inputs("text only", None, None) == {"prompt": "text only"}


def test_sampling_parameters_stream_deltas_and_carry_only_what_was_asked() -> None:
    params = GenerationParams(
        max_tokens=12, temperature=0.0, seed=3, stop=("END",), json_schema={"type": "object"}
    )
    sampling = sampling_params(InferenceRequest.ask("q", None, params))
    assert sampling.max_tokens == 12
    assert sampling.output_kind is RequestOutputKind.DELTA
    assert (sampling.temperature, sampling.seed, sampling.stop) == (0.0, 3, ["END"])
    assert sampling.structured_outputs is not None
    assert sampling.structured_outputs.json == {"type": "object"}
    plain = sampling_params(InferenceRequest.ask("q", None, GenerationParams(max_tokens=5)))
    assert plain.structured_outputs is None
    assert plain.seed is None


def _meta(indices: list[int], times: list[float], fps: float, total: int) -> Any:
    batch = FrameBatch.of(
        np.zeros((len(indices), 32, 32, 3), np.uint8),
        kind=MediaKind.VIDEO,
        indices=indices,
        timestamps_s=times,
        source_fps=fps,
        duration_s=total / fps,
        source_width=32,
        source_height=32,
        total_frames=total,
    )
    return batch.meta


def test_a_window_of_a_long_video_has_the_rate_it_was_sampled_at() -> None:
    """A job's chunk (60-80 s of a 30-minute video, a frame every 5 s): Qwen2.5-VL's temporal
    positions take transformers' sampled_fps, which must be 1 frame / 5 s, not 4 frames spread
    over 30 minutes (the old metadata: 0.002 fps, positions 450x too far apart)."""
    from transformers.video_utils import VideoMetadata

    meta = _meta([1800, 1950, 2100, 2250], [60.0, 65.0, 70.0, 75.0], 30.0, 54_000)
    metadata = meta.vllm_video_metadata()
    known = {k: v for k, v in metadata.items() if k != "do_sample_frames"}
    assert VideoMetadata(**known).sampled_fps == pytest.approx(0.2)
    assert VideoMetadata(**known).timestamps == [60.0, 65.0, 70.0, 75.0]


def test_the_indices_give_each_frames_true_time_in_a_variable_rate_video() -> None:
    """Qwen3-VL writes indices / fps into the prompt as each frame's time: a variable-rate
    video's decode indices (0, 10, 20, 30 at an average 10 fps) are not its frames' times."""
    meta = _meta([0, 10, 20, 30], [0.0, 1.0, 2.5, 4.0], 10.0, 40)
    metadata = meta.vllm_video_metadata()
    times = [i / metadata["fps"] for i in metadata["frames_indices"]]
    assert times == [0.0, 1.0, 2.5, 4.0]
