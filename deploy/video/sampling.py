"""Which frame indices to keep: uniform N, or a fixed rate capped at N."""

from __future__ import annotations

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
