"""Typed messages between the deployments.

The extractor decodes a `FrameBatch` (numpy arrays) and puts its pixels in Ray's object store
once; what leaves it is `StoredFrames`: the small `FrameMeta` and a reference to the pixels. The
ingress keeps the metadata and passes the reference on, so the engine replica reads the pixels
straight from the object store: they never cross the ingress. Everything else is small data.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from deploy.core.speech import AudioMode

if TYPE_CHECKING:
    from ray import ObjectRef


class MediaKind(StrEnum):
    VIDEO = "video"
    IMAGE = "image"


class Strategy(StrEnum):
    UNIFORM = "uniform"  # num_frames evenly spaced
    FPS = "fps"  # a fixed rate, capped by num_frames
    SCENE = "scene"  # the first frame of each scene, topped up uniformly
    KEYFRAMES = "keyframes"  # keyframes only (no decoding between them): quick previews


# A time window's bounds: a day of video is more than anyone sends.
MAX_SECONDS = 86400.0


class SamplingOptions(BaseModel):
    """How to pick frames from one video. The one definition of each option's own bounds: both
    APIs check requests against it, then against the app's limits (api/sampling_options.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: Strategy | None = Field(
        default=None, description="Default: fps when fps is given, else uniform."
    )
    scene_threshold: float | None = Field(
        default=None, gt=0, le=1, description="Scene sampling: frame difference that is a cut."
    )
    min_gap_s: float | None = Field(
        default=None,
        ge=0,
        le=MAX_SECONDS,
        description="Scene sampling: fewest seconds between chosen frames.",
    )

    num_frames: int | None = Field(default=None, ge=1, description="Frames sampled uniformly.")
    fps: float | None = Field(
        default=None, gt=0, description="Frames per second of video; num_frames caps the count."
    )
    start_s: float | None = Field(
        default=None, ge=0, le=MAX_SECONDS, description="Sample from this time on."
    )
    end_s: float | None = Field(
        default=None, gt=0, le=MAX_SECONDS, description="Sample up to this time."
    )

    @property
    def resolved_strategy(self) -> Strategy:
        if self.strategy is not None:
            return self.strategy
        return Strategy.FPS if self.fps is not None else Strategy.UNIFORM


@dataclass(frozen=True)
class FrameMeta:
    """What is known of sampled frames without their pixels: what the ingress keeps."""

    kind: MediaKind
    count: int
    shape: tuple[int, ...]  # of the frames array, [T, H, W, 3]
    indices: list[int]  # each frame's index in the source
    timestamps_s: list[float]
    source_fps: float
    duration_s: float
    total_frames: int
    source_width: int = 0
    source_height: int = 0
    extract_s: float = 0.0
    cached: bool = False  # served from the extractor's frame cache
    reader: str = ""  # what decoded a video: "pyav" or "opencv" (video/av_read.py)
    # Whether the source has an audio track (None: not looked at): the speech stage asks for
    # no audio of a video known to have none.
    has_audio: bool | None = None

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape))  # uint8

    def vllm_video_metadata(self) -> dict[str, Any]:
        """The metadata vLLM's Qwen video processors need with pre-sampled frames, so that the
        model sees each frame at its true time:

        - Qwen3-VL writes each temporal patch's time into the prompt (`<4.0 seconds>`) as
          `frames_indices / fps`: the indices are the frames' times at the source's rate (a
          constant-rate video's decode indices; a variable-rate one's drift from its times).
        - Qwen2.5-VL spaces its temporal positions by the sampled rate, which transformers
          computes as `len(frames_indices) / total_num_frames * fps` (VideoMetadata.sampled_fps):
          `total_num_frames` is the frames the sample spans, so that a window of a long video
          (a job's chunk, start_s/end_s) is not taken as frames spread over all of it."""
        fps, times = self.source_fps, self.timestamps_s
        if fps <= 0 or len(times) != self.count:
            indices, spanned = list(self.indices), self.total_frames
        else:
            indices = [round(t * fps) for t in times]
            spanned = self.total_frames
            if self.count >= 2:
                interval = (times[-1] - times[0]) / (self.count - 1)
                spanned = max(self.count, round(self.count * interval * fps))
        return {
            "total_num_frames": spanned,
            "fps": fps,
            "duration": self.duration_s,
            "frames_indices": indices,
            "video_backend": "opencv",
            "do_sample_frames": False,
        }


@dataclass(frozen=True)
class FrameBatch:
    """Frames sampled from one video (or one image), RGB uint8 `[T, H, W, 3]`, with what is known
    of them (`meta`: the part that travels without the pixels)."""

    frames: np.ndarray
    meta: FrameMeta

    @classmethod
    def of(
        cls,
        frames: np.ndarray,
        *,
        kind: MediaKind,
        indices: list[int],
        timestamps_s: list[float],
        source_fps: float,
        duration_s: float,
        total_frames: int,
        source_width: int = 0,
        source_height: int = 0,
        extract_s: float = 0.0,
        reader: str = "",
    ) -> FrameBatch:
        """`frames` described: their count and shape are the array's."""
        meta = FrameMeta(
            kind=kind,
            count=int(frames.shape[0]),
            shape=tuple(int(n) for n in frames.shape),
            indices=indices,
            timestamps_s=timestamps_s,
            source_fps=source_fps,
            duration_s=duration_s,
            total_frames=total_frames,
            source_width=source_width,
            source_height=source_height,
            extract_s=extract_s,
            reader=reader,
        )
        return cls(frames, meta)

    @property
    def count(self) -> int:
        return self.meta.count

    def with_meta(self, **changes: Any) -> FrameBatch:
        """The same pixels, `changes` made to the metadata (e.g. extract_s, cached)."""
        return FrameBatch(self.frames, dataclasses.replace(self.meta, **changes))


@dataclass(frozen=True)
class StoredFrames:
    """Frames whose pixels wait in Ray's object store (`pixels` an ObjectRef), or in this
    process (`pixels` the array itself: tests, and callers without Ray).

    `frames_id` names these exact pixels (the source's digest, the sampling options and the
    settings that shape frames; empty for a frame list): vLLM takes it as the item's multimodal
    UUID, so a repeat is known without hashing pixels. `download_s`: time spent fetching a URL."""

    meta: FrameMeta
    pixels: ObjectRef[np.ndarray] | np.ndarray
    frames_id: str = ""
    download_s: float = 0.0

    @classmethod
    def inline(cls, batch: FrameBatch, frames_id: str = "") -> StoredFrames:
        return cls(batch.meta, batch.frames, frames_id)

    async def frames(self) -> np.ndarray:
        """The pixels, `[T, H, W, 3]` uint8 (read-only when they came from the object store)."""
        if isinstance(self.pixels, np.ndarray):
            return self.pixels
        frames: np.ndarray = await self.pixels
        return frames


@dataclass(frozen=True)
class GenerationParams:
    max_tokens: int
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    json_schema: dict[str, Any] | None = None
    # The answer is exactly one of these (a stream's yes/no rules): guided decoding in vLLM,
    # a JSON schema enum in Ollama.
    choice: tuple[str, ...] = ()

    def format_schema(self) -> dict[str, Any] | None:
        """The JSON schema a backend without guided choices constrains the answer with."""
        if self.choice:
            return {"type": "string", "enum": list(self.choice)}
        return self.json_schema


@dataclass(frozen=True)
class AnalyzeRequest:
    """A question about one video or image (the analyze endpoint's fields, validated)."""

    prompt: str
    sampling: SamplingOptions
    params: GenerationParams
    audio: AudioMode = AudioMode.AUTO  # whether the answer hears the video's speech


class Role(StrEnum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"


@dataclass(frozen=True)
class Turn:
    """One message of a conversation. `media`: the request's frames belong to this turn (they
    go before its text, the way Qwen's chat template places them)."""

    role: Role
    text: str
    media: bool = False


@dataclass(frozen=True)
class InferenceRequest:
    """What the ingress asks an engine deployment: a conversation about (at most) one video or
    image, whose frames travel once in `media`."""

    turns: tuple[Turn, ...]
    media: StoredFrames | None
    params: GenerationParams
    request_id: str = ""

    @classmethod
    def ask(
        cls, prompt: str, media: StoredFrames | None, params: GenerationParams
    ) -> InferenceRequest:
        """A single question about `media` (the analyze endpoint)."""
        return cls((Turn(Role.USER, prompt, media=media is not None),), media, params)


@dataclass(frozen=True)
class InferenceResult:
    text: str
    model: str
    backend: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None = None
    inference_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Delta:
    """One piece of a streamed answer. The last one has `finish_reason` and the token counts."""

    text: str
    model: str
    backend: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


async def join_deltas(deltas: AsyncIterator[Delta], started: float) -> InferenceResult | None:
    """A whole answer from its streamed pieces (None when there was none); `started` is the
    perf_counter time the request began."""
    pieces: list[str] = []
    last: Delta | None = None
    async for delta in deltas:
        pieces.append(delta.text)
        last = delta
    if last is None:
        return None
    return InferenceResult(
        text="".join(pieces),
        model=last.model,
        backend=last.backend,
        prompt_tokens=last.prompt_tokens,
        completion_tokens=last.completion_tokens,
        finish_reason=last.finish_reason,
        inference_s=time.perf_counter() - started,
    )


class FallbackInfo(BaseModel):
    """Set when a backend other than the primary answered: which one failed, and why."""

    from_backend: str
    reason: str
