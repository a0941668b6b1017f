"""Which frame indices to keep: uniform N, or a fixed rate capped at N, within a time window."""

from __future__ import annotations

import math

import numpy as np


def uniform_indices(total_frames: int, num_frames: int) -> list[int]:
    """`num_frames` indices spread evenly over [0, total_frames - 1], ends included."""
    if total_frames <= 0:
        raise ValueError("the video has no frames")
    count = min(num_frames, total_frames)
    return [int(i) for i in np.unique(np.linspace(0, total_frames - 1, count).round().astype(int))]


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


def window(total_frames: int, fps: float, start_s: float | None, end_s: float | None) -> range:
    """The frame indices inside [start_s, end_s] (seconds; either may be open)."""
    if start_s is None and end_s is None:
        return range(total_frames)
    if fps <= 0:
        raise ValueError("the video reports no frame rate, so start_s / end_s cannot be placed")
    duration = total_frames / fps
    first = math.ceil(start_s * fps) if start_s else 0
    stop = min(total_frames, math.floor(end_s * fps) + 1) if end_s is not None else total_frames
    if first >= total_frames:
        raise ValueError(f"start_s={start_s:g} is past the end of the video ({duration:.2f}s)")
    if stop <= first:
        raise ValueError(f"no frame lies between start_s={start_s} and end_s={end_s}")
    return range(first, stop)
