"""OpenCV decoding of uploaded bytes into sampled, resized RGB frames.

Blocking: the deployment runs these functions in a worker thread, never on the event loop.
Only the frames that are kept are retrieved, converted and resized; the others are `grab()`bed.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import cv2
import numpy as np

from deploy.config import ExtractionSettings
from deploy.errors import InvalidRequest, UnprocessableInput
from deploy.schemas import FrameBatch, MediaKind, SamplingOptions
from deploy.video.container import sniff
from deploy.video.resize import fit_size, per_frame_max_pixels
from deploy.video.sampling import fps_indices, uniform_indices, window

logger = logging.getLogger("ray.serve.vidserve.extract")

_SUPPORTED = {
    MediaKind.VIDEO: "an MP4, MOV, MKV, WebM or AVI video",
    MediaKind.IMAGE: "a JPEG, PNG, WebP or BMP image",
}
# The multipart field each kind of media is uploaded as.
FIELD_FOR = {MediaKind.VIDEO: "file", MediaKind.IMAGE: "image"}
# A header may overstate the frame count by a little; past this, stopping early means truncation.
_COUNT_SLACK_FRAMES = 2
_COUNT_SLACK_RATIO = 0.01


def extract(
    data: bytes,
    options: SamplingOptions,
    settings: ExtractionSettings,
    expected: MediaKind = MediaKind.VIDEO,
    param: str | None = None,
) -> FrameBatch:
    """Decode `data` into the frames `options` ask for; `data` must be of the `expected` kind.
    `param` names where the media came from in errors (default: the upload field)."""
    started = time.perf_counter()
    try:
        batch = _decode(data, options, settings, expected, param)
    except (InvalidRequest, UnprocessableInput) as exc:
        exc.param = param or FIELD_FOR[expected]
        raise
    return dataclasses.replace(batch, extract_s=time.perf_counter() - started)


def _decode(
    data: bytes,
    options: SamplingOptions,
    settings: ExtractionSettings,
    expected: MediaKind,
    param: str | None,
) -> FrameBatch:
    if not data:
        raise InvalidRequest(f"the {expected.value} is empty", code="empty_file")
    sniffed = sniff(data[:512])
    if sniffed.kind is not expected:
        raise UnprocessableInput(
            _wrong_kind(expected, sniffed.kind, sniffed.format, param), code="unsupported_media"
        )
    if expected is MediaKind.IMAGE:
        return _decode_image(data, sniffed.format, settings)
    return _decode_video(data, options, settings)


def frames_from_images(
    images: list[bytes], options: SamplingOptions, settings: ExtractionSettings, param: str
) -> FrameBatch:
    """A video sent as its frames (JPEG or PNG images), taken as 1 s apart as vLLM does; thinned
    uniformly to `num_frames` (or `max_num_frames`) and resized like decoded frames."""
    started = time.perf_counter()
    if not images:
        raise InvalidRequest("the list of frames is empty", param=param, code="empty_file")
    count = options.num_frames or min(len(images), settings.max_num_frames)
    indices = uniform_indices(len(images), count)
    frames: list[np.ndarray] = []
    size: tuple[int, int] | None = None
    source = (0, 0)
    for index in indices:
        bgr = cv2.imdecode(np.frombuffer(images[index], dtype=np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise UnprocessableInput(
                f"frame {index} of the list is not a decodable JPEG or PNG image",
                param=param,
                code="corrupt_media",
            )
        if size is None:
            source = (bgr.shape[0], bgr.shape[1])
            size = _frame_size(source, len(indices), settings)
        frames.append(_to_rgb(bgr, size))
    return FrameBatch(
        kind=MediaKind.VIDEO,
        frames=np.stack(frames),
        indices=indices,
        timestamps_s=[float(i) for i in indices],
        source_fps=1.0,
        duration_s=float(len(images)),
        source_width=source[1],
        source_height=source[0],
        total_frames=len(images),
        extract_s=time.perf_counter() - started,
    )


def _wrong_kind(expected: MediaKind, found: MediaKind | None, fmt: str, param: str | None) -> str:
    if found is None:
        return (
            f"{param or 'the uploaded ' + FIELD_FOR[expected]} is not a {expected.value} (its "
            f"bytes look like {fmt}); send {_SUPPORTED[expected]}"
        )
    if param is not None:
        return f"{param} holds a {fmt} {found.value}, not a {expected.value}"
    return (
        f"the '{FIELD_FOR[expected]}' field holds a {fmt} {found.value}, not a {expected.value}; "
        f"send it as the '{FIELD_FOR[found]}' field instead"
    )


def _decode_image(data: bytes, fmt: str, settings: ExtractionSettings) -> FrameBatch:
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise UnprocessableInput(
            f"the {fmt} image could not be decoded: it is corrupt or truncated",
            code="corrupt_media",
        )
    height, width = bgr.shape[:2]
    size = fit_size(
        height,
        width,
        factor=settings.patch_factor,
        min_pixels=settings.min_pixels,
        max_pixels=settings.max_pixels,
    )
    frame = _to_rgb(bgr, size)
    return FrameBatch(
        kind=MediaKind.IMAGE,
        frames=frame[np.newaxis],
        indices=[0],
        timestamps_s=[0.0],
        source_fps=0.0,
        duration_s=0.0,
        source_width=width,
        source_height=height,
        total_frames=1,
    )


def _to_rgb(bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    height, width = size
    if bgr.shape[0] != height or bgr.shape[1] != width:
        shrinking = height * width < bgr.shape[0] * bgr.shape[1]
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
        bgr = cv2.resize(bgr, (width, height), interpolation=interpolation)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@contextmanager
def _as_file(data: bytes) -> Iterator[str]:
    """OpenCV's FFmpeg backend reads files: put the bytes in memory-backed tmp when there is one."""
    directory = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    with tempfile.NamedTemporaryFile(dir=directory, prefix="vidserve-", suffix=".video") as handle:
        handle.write(data)
        handle.flush()
        yield handle.name


@contextmanager
def _open(path: str) -> Iterator[cv2.VideoCapture]:
    capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    try:
        if not capture.isOpened():
            raise UnprocessableInput(
                "the video could not be opened: it is corrupt, truncated or in a format OpenCV "
                f"cannot decode; send {_SUPPORTED[MediaKind.VIDEO]}",
                code="corrupt_media",
            )
        yield capture
    finally:
        capture.release()


def _decode_video(
    data: bytes, options: SamplingOptions, settings: ExtractionSettings
) -> FrameBatch:
    with _as_file(data) as path:
        with _open(path) as capture:
            total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
            fps = float(capture.get(cv2.CAP_PROP_FPS))
            if total > 0:  # the common case: the header knows its frame count, one open
                return _read(capture, _choose(total, fps, options, settings), total, fps, settings)
        total = _count_frames(path)
        with _open(path) as capture:
            return _read(capture, _choose(total, fps, options, settings), total, fps, settings)


def _count_frames(path: str) -> int:
    """Containers without a frame count in their header: count with a grab-only pass."""
    with _open(path) as capture:
        count = 0
        while capture.grab():
            count += 1
    if count == 0:
        raise UnprocessableInput(
            "the video has no decodable frame: it is corrupt or truncated",
            code="corrupt_media",
        )
    return count


def _choose(
    total: int, fps: float, options: SamplingOptions, settings: ExtractionSettings
) -> list[int]:
    try:
        span = window(total, fps, options.start_s, options.end_s)
        if options.fps is not None:
            cap = options.num_frames or settings.max_num_frames
            picked = fps_indices(len(span), fps, options.fps, cap)
        else:
            picked = uniform_indices(len(span), options.num_frames or settings.default_num_frames)
    except ValueError as exc:
        raise UnprocessableInput(str(exc), code="out_of_range") from None
    return [span.start + i for i in picked]


def _read(
    capture: cv2.VideoCapture,
    indices: list[int],
    total: int,
    fps: float,
    settings: ExtractionSettings,
) -> FrameBatch:
    wanted = set(indices)
    frames: list[np.ndarray] = []
    kept: list[int] = []
    stamps: list[float] = []
    size: tuple[int, int] | None = None
    source_size = (0, 0)
    last_decoded = -1
    for index in range(indices[-1] + 1):
        if not capture.grab():
            break
        last_decoded = index
        if index not in wanted:
            continue
        ok, bgr = capture.retrieve()
        if not ok:
            break
        if size is None:
            source_size = (bgr.shape[0], bgr.shape[1])
            size = _frame_size(source_size, len(indices), settings)
        frames.append(_to_rgb(bgr, size))
        kept.append(index)
        stamps.append(_timestamp(capture, index, fps))
    _check_complete(kept, indices, last_decoded, total)
    return FrameBatch(
        kind=MediaKind.VIDEO,
        frames=np.stack(frames),
        indices=kept,
        timestamps_s=stamps,
        source_fps=fps,
        duration_s=total / fps if fps > 0 else 0.0,
        source_width=source_size[1],
        source_height=source_size[0],
        total_frames=total,
    )


def _frame_size(
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


def _timestamp(capture: cv2.VideoCapture, index: int, fps: float) -> float:
    """The decoder's presentation time (true for variable frame rates), else index / fps."""
    msec = float(capture.get(cv2.CAP_PROP_POS_MSEC))
    if msec > 0 or index == 0:
        return round(msec / 1000.0, 6)
    return round(index / fps, 6) if fps > 0 else 0.0


def _check_complete(kept: list[int], wanted: list[int], last_decoded: int, total: int) -> None:
    if not kept:
        raise UnprocessableInput(
            "no frame of the video could be decoded: it is corrupt or truncated",
            code="corrupt_media",
        )
    if len(kept) == len(wanted):
        return
    slack = max(_COUNT_SLACK_FRAMES, int(total * _COUNT_SLACK_RATIO))
    if last_decoded + 1 < total - slack:
        raise UnprocessableInput(
            f"the video is truncated or corrupt: its header promises {total} frames but decoding "
            f"stopped after frame {last_decoded + 1}",
            code="corrupt_media",
        )
    logger.info(
        "header overstated the frame count (%d, decoded %d); kept %d of %d frames",
        total,
        last_decoded + 1,
        len(kept),
        len(wanted),
    )
