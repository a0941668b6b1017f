"""Which frames a request's strategy picks (uniform, fps, keyframes, scene cuts), as sorted
frame indices of the video; 422 when the strategy cannot apply."""

from __future__ import annotations

import itertools

import cv2
import numpy as np

from deploy.config.settings import ExtractionSettings
from deploy.core.errors import UnprocessableInput
from deploy.core.messages import SamplingOptions, Strategy
from deploy.video import limits
from deploy.video.capture import open_capture
from deploy.video.probe import VideoIndex
from deploy.video.read_plan import PYAV_READER, plan_reads
from deploy.video.sampling import (
    fps_indices,
    keyframe_indices,
    near_keyframes,
    scene_indices,
    time_indices,
    uniform_indices,
    window,
)

# Uniform frames move nearer to keyframes (extraction.uniform_slack_s) only when that decodes at
# most this share of the frames their exact places need.
WORTH_MOVING = 0.8


def nominal_fps(times: list[float]) -> float:
    span = times[-1] - times[0]
    return (len(times) - 1) / span if span > 0 else 0.0


def is_variable_rate(times: list[float], tolerance: float = 0.1) -> bool:
    """Whether frame intervals differ by more than `tolerance` of their median."""
    if len(times) < 3:
        return False
    steps = np.diff(np.asarray(times))
    median = float(np.median(steps))
    return median <= 0 or float(np.abs(steps - median).max()) > tolerance * median


def count_frames(path: str, settings: ExtractionSettings) -> int:
    """Containers without a frame count in their header: count with a grab-only pass (stopped
    at the frame limit)."""
    with open_capture(path) as capture:
        count = 0
        while capture.grab():
            count += 1
            if count > settings.max_source_frames:
                limits.check_frames(count, settings)
    if count == 0:
        raise UnprocessableInput(
            "the video has no decodable frame: it is corrupt or truncated",
            code="corrupt_media",
        )
    return count


def choose(
    total: int,
    fps: float,
    options: SamplingOptions,
    settings: ExtractionSettings,
    *,
    index: VideoIndex | None = None,
    path: str | None = None,
) -> list[int]:
    """The frame indices the request's strategy picks (sorted); 422 when it cannot."""
    try:
        return _pick(total, fps, options, settings, index=index, path=path)
    except ValueError as exc:
        raise UnprocessableInput(str(exc), code="out_of_range") from None


def _pick(
    total: int,
    fps: float,
    options: SamplingOptions,
    settings: ExtractionSettings,
    *,
    index: VideoIndex | None,
    path: str | None,
) -> list[int]:
    times = index.times_s if index is not None else None
    span = window(total, fps, options.start_s, options.end_s, times)
    strategy = options.resolved_strategy
    cap = options.num_frames or settings.max_num_frames
    if strategy is Strategy.FPS:
        if options.fps is None:
            raise ValueError("the fps strategy needs fps (frames per second to sample)")
        if times is not None:
            return time_indices(times, span, options.fps, cap)
        return [span.start + i for i in fps_indices(len(span), fps, options.fps, cap)]
    if strategy is Strategy.KEYFRAMES or strategy is Strategy.SCENE:
        if index is None or path is None:
            raise ValueError(f"this video has no frame index; {strategy.value} needs one")
        if strategy is Strategy.KEYFRAMES:
            return keyframe_indices(index.keyframes, span, cap)
        return _scene_choose(path, index, span, options, settings)
    count = options.num_frames or settings.default_num_frames
    exact = [span.start + i for i in uniform_indices(len(span), count)]
    if index is None or settings.uniform_slack_s <= 0 or is_variable_rate(index.times_s):
        return exact
    rate = index.fps if index.fps > 0 else nominal_fps(index.times_s)
    moved = near_keyframes(exact, index.keyframes, settings.uniform_slack_s * rate, span)
    # Moved only where it pays: a short clip, or keyframes as dense as the frames asked, saves
    # next to nothing, and its frames stay at their exact places.
    cost = [plan_reads(picks, index.keyframes, PYAV_READER).decodes for picks in (exact, moved)]
    return moved if cost[1] <= WORTH_MOVING * cost[0] else exact


# Frames are compared for scene cuts at this size, in gray: cheap, and blind to noise.
_SCENE_THUMB = (32, 18)


def _scene_choose(
    path: str,
    index: VideoIndex,
    span: range,
    options: SamplingOptions,
    settings: ExtractionSettings,
) -> list[int]:
    """Compare frames at `scene_analysis_fps` (mean absolute difference of small gray
    thumbnails, 0..1) and keep the first frame of each scene (sampling.scene_indices)."""
    rate = index.fps if index.fps > 0 else nominal_fps(index.times_s)
    step = max(1, round(rate / settings.scene_analysis_fps)) if rate > 0 else 1
    candidates = list(range(span.start, span.stop, step))
    keyframes = None if is_variable_rate(index.times_s) else index.keyframes
    thumbs: list[np.ndarray] = []
    plan = plan_reads(candidates, keyframes)
    limits.check_decode_work(plan.decodes, index.pixels, settings)
    with open_capture(path) as capture:
        position = 0
        for step_ in plan.steps:
            if step_.seek:
                capture.set(cv2.CAP_PROP_POS_FRAMES, step_.target)
                position = step_.target
            while position <= step_.target and capture.grab():
                position += 1
            ok, bgr = capture.retrieve()
            if not ok:
                break
            small = cv2.resize(bgr, _SCENE_THUMB, interpolation=cv2.INTER_AREA)
            thumbs.append(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).astype(np.float32))
    candidates = candidates[: len(thumbs)]
    distances = [0.0] + [float(np.abs(b - a).mean()) / 255.0 for a, b in itertools.pairwise(thumbs)]
    threshold = options.scene_threshold or settings.scene_threshold
    gap_s = options.min_gap_s if options.min_gap_s is not None else settings.scene_min_gap_s
    return scene_indices(
        candidates,
        distances,
        threshold=threshold,
        min_gap=round(gap_s * rate),
        count=options.num_frames or settings.default_num_frames,
    )
