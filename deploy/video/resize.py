"""Frame sizes that fit a Qwen-VL style processor: sides multiples of the patch factor,
pixels per frame within [min_pixels, max_pixels], and all frames within a total budget."""

from __future__ import annotations

import math

import cv2
import numpy as np

from deploy.config.settings import ExtractionSettings


def fit_size(
    height: int, width: int, *, factor: int, min_pixels: int, max_pixels: int
) -> tuple[int, int]:
    """(height, width) rounded to multiples of `factor` with the aspect ratio kept
    and the area in [min_pixels, max_pixels] (Qwen2-VL's `smart_resize`)."""
    if height <= 0 or width <= 0:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def per_frame_max_pixels(
    num_frames: int, *, min_pixels: int, max_pixels: int, total_pixels: int, temporal_patch: int = 2
) -> int:
    """Most pixels one frame may have so that `num_frames` frames fit `total_pixels`.

    Frames are merged `temporal_patch` at a time by the vision encoder, so the budget is shared
    by ceil(num_frames / temporal_patch) merged frames, as qwen-vl-utils computes it."""
    merged = max(1, math.ceil(num_frames / temporal_patch))
    share = total_pixels // merged
    return max(min(max_pixels, share), min_pixels)


def shrink(image: np.ndarray, size: tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
    """Resize to `size` (height, width), into `out` when given. Beyond a 2x shrink per side,
    bilinear sampling aliases: halve by 2x2 averaging first (OpenCV's integer-scale area path,
    about 10x faster than area resampling at an arbitrary scale), as many times as it takes,
    then bilinear for the rest."""
    height, width = size
    while image.shape[0] >= 2 * height and image.shape[1] >= 2 * width:
        even_h, even_w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
        image = cv2.resize(
            image[:even_h, :even_w], (even_w // 2, even_h // 2), interpolation=cv2.INTER_AREA
        )
    if image.shape[0] != height or image.shape[1] != width:
        return cv2.resize(image, (width, height), dst=out, interpolation=cv2.INTER_LINEAR)
    if out is not None:
        out[...] = image
        return out
    return image


def frame_size(
    source: tuple[int, int], count: int, settings: ExtractionSettings
) -> tuple[int, int]:
    budget = per_frame_max_pixels(
        count,
        min_pixels=settings.min_pixels,
        max_pixels=settings.max_pixels,
        total_pixels=settings.total_pixels,
    )
    return fit_size(
        source[0],
        source[1],
        factor=settings.patch_factor,
        min_pixels=settings.min_pixels,
        max_pixels=budget,
    )


def to_rgb(bgr: np.ndarray, size: tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
    """Resize first (less to convert), then BGR -> RGB, into `out` when given."""
    return cv2.cvtColor(shrink(bgr, size), cv2.COLOR_BGR2RGB, dst=out)
