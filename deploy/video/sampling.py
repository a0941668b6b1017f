"""Which frame indices to keep: uniform N, or a fixed rate capped at N, within a time window."""

from __future__ import annotations

import bisect
import itertools
import math

import numpy as np


def uniform_indices(total_frames: int, num_frames: int) -> list[int]:
    """`num_frames` indices spread evenly over [0, total_frames - 1], ends included."""
    if total_frames <= 0:
        raise ValueError("the video has no frames")
    count = min(num_frames, total_frames)
    return [int(i) for i in np.unique(np.linspace(0, total_frames - 1, count).round().astype(int))]


def near_keyframes(
    targets: list[int], keyframes: list[int], slack: float, span: range
) -> list[int]:
    """`targets` (sorted, inside `span`), each moved within `slack` frames (and within `span`)
    to the frame that costs the least to decode: the one closest after its keyframe (a keyframe
    decodes alone; a frame k past its keyframe needs the k before it), nearest the target on a
    tie. The first and last stay, so the sample still spans the window; the moves never cross:
    `slack` is held below half the smallest gap between targets."""
    if len(targets) < 2 or slack < 1 or not keyframes:
        return list(targets)
    gap = min(b - a for a, b in itertools.pairwise(targets))
    reach = min(int(slack), (gap - 1) // 2)
    if reach < 1:
        return list(targets)
    moved = [targets[0]]  # the ends stay: the sample still spans the whole window
    for target in targets[1:-1]:
        best = (target - _keyframe_before(keyframes, target), 0, target)
        for candidate in range(max(span.start, target - reach), min(span.stop, target + reach + 1)):
            offset = candidate - _keyframe_before(keyframes, candidate)
            best = min(best, (offset, abs(candidate - target), candidate))
        moved.append(best[2])
    return [*moved, targets[-1]]


def _keyframe_before(keyframes: list[int], frame: int) -> int:
    at = bisect.bisect_right(keyframes, frame) - 1
    return keyframes[at] if at >= 0 else 0


def fps_indices(total_frames: int, source_fps: float, target_fps: float, cap: int) -> list[int]:
    """Frames every 1/target_fps seconds from the start; thinned uniformly to `cap` if more."""
    if total_frames <= 0:
        raise ValueError("the video has no frames")
    if source_fps <= 0:
        raise ValueError("the video reports no frame rate; ask for num_frames instead of fps")
    step = source_fps / target_fps
    picked = np.unique(np.floor(np.arange(0, total_frames, max(step, 1.0))).astype(int))
    if len(picked) > cap:
        keep = np.linspace(0, len(picked) - 1, cap).round().astype(int)
        picked = picked[np.unique(keep)]
    return [int(i) for i in picked]


def time_indices(times: list[float], span: range, target_fps: float, cap: int) -> list[int]:
    """By presentation time (true for variable frame rates): the frame shown at each multiple of
    1/target_fps from the window's start, thinned uniformly to `cap` if more."""
    stamps = np.asarray(times[span.start : span.stop])
    wanted = np.arange(stamps[0], stamps[-1] + 1e-9, 1.0 / target_fps)
    shown = np.searchsorted(stamps, wanted + 1e-6, side="right") - 1
    picked = np.unique(shown)
    if len(picked) > cap:
        keep = np.linspace(0, len(picked) - 1, cap).round().astype(int)
        picked = picked[np.unique(keep)]
    return [span.start + int(i) for i in picked]


def window(
    total_frames: int,
    fps: float,
    start_s: float | None,
    end_s: float | None,
    times: list[float] | None = None,
) -> range:
    """The frame indices inside [start_s, end_s] (seconds; either may be open), placed by the
    frames' presentation times when known, else by the frame rate."""
    if start_s is None and end_s is None:
        return range(total_frames)
    if times is not None:
        stamps = np.asarray(times) - times[0]
        duration = float(stamps[-1])
        first = int(np.searchsorted(stamps, (start_s or 0.0) - 1e-6, side="left"))
        stop = (
            int(np.searchsorted(stamps, end_s + 1e-6, side="right"))
            if end_s is not None
            else total_frames
        )
        return _checked(
            first, stop, total_frames=total_frames, duration=duration, start_s=start_s, end_s=end_s
        )
    if fps <= 0:
        raise ValueError("the video reports no frame rate, so start_s / end_s cannot be placed")
    duration = total_frames / fps
    first = math.ceil(start_s * fps) if start_s else 0
    stop = min(total_frames, math.floor(end_s * fps) + 1) if end_s is not None else total_frames
    return _checked(
        first, stop, total_frames=total_frames, duration=duration, start_s=start_s, end_s=end_s
    )


def _checked(
    first: int,
    stop: int,
    *,
    total_frames: int,
    duration: float,
    start_s: float | None,
    end_s: float | None,
) -> range:
    if first >= total_frames:
        raise ValueError(f"start_s={start_s or 0:g} is past the end of the video ({duration:.2f}s)")
    if stop <= first:
        raise ValueError(f"no frame lies between start_s={start_s} and end_s={end_s}")
    return range(first, stop)


def keyframe_indices(keyframes: list[int], span: range, cap: int) -> list[int]:
    """The keyframes inside the window, thinned uniformly to `cap`."""
    inside = [k for k in keyframes if span.start <= k < span.stop]
    if not inside:
        return [span.start]
    return [inside[i] for i in uniform_indices(len(inside), cap)]


def scene_indices(
    candidates: list[int],
    distances: list[float],
    *,
    threshold: float,
    min_gap: int,
    count: int,
) -> list[int]:
    """The first frame of each scene: `candidates[0]`, then every candidate whose distance to
    the one before is above `threshold` (strongest cuts first, none within `min_gap` frames of
    another), at most `count`; topped up with uniformly spaced candidates when there are fewer
    cuts. `distances[k]` compares candidates[k] with candidates[k - 1] (distances[0] unused)."""
    cuts = sorted(
        (k for k in range(1, len(candidates)) if distances[k] > threshold),
        key=lambda k: -distances[k],
    )
    chosen = [candidates[0]]
    for k in cuts:
        if len(chosen) >= count:
            break
        if all(abs(candidates[k] - c) >= min_gap for c in chosen):
            chosen.append(candidates[k])
    if len(chosen) < count:
        for i in uniform_indices(len(candidates), count):
            if len(chosen) >= count:
                break
            if all(abs(candidates[i] - c) >= min_gap for c in chosen):
                chosen.append(candidates[i])
    return sorted(chosen)
