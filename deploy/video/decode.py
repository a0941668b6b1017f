"""Decoding of uploaded bytes or a video file into sampled, resized RGB frames: what kind the
media is, which frames (choose.py), and reading them (frame_reader.py, by the cheapest plan).

Blocking: the deployment runs these functions in a worker thread, never on the event loop.
Only the frames that are kept are retrieved, converted and resized; the others are `grab()`bed.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

import cv2

from deploy.config.settings import ExtractionSettings
from deploy.core.errors import InvalidRequest, PayloadTooLarge, UnprocessableInput
from deploy.core.messages import FrameBatch, MediaKind, SamplingOptions
from deploy.video import av_read, frame_reader, limits
from deploy.video.capture import SUPPORTED, as_file, open_capture
from deploy.video.choose import choose, count_frames, is_variable_rate, nominal_fps
from deploy.video.container import sniff
from deploy.video.frame_reader import COUNT_SLACK_FRAMES, COUNT_SLACK_RATIO
from deploy.video.images import decode_image
from deploy.video.probe import VideoIndex, probe
from deploy.video.read_plan import PYAV_READER, plan_reads

logger = logging.getLogger("ray.serve.vidserve.extract")


def extract(
    data: bytes,
    options: SamplingOptions,
    settings: ExtractionSettings,
    expected: MediaKind = MediaKind.VIDEO,
    param: str | None = None,
) -> FrameBatch:
    """Decode `data` into the frames `options` ask for; `data` must be of the `expected` kind.
    `param` names where the media came from in errors, as the API calls it (default: the
    media's kind)."""
    return _timed(lambda: _decode(data, options, settings, expected, param), param or expected)


def _timed(decode: Callable[[], FrameBatch], param: str) -> FrameBatch:
    """`decode()` with its time in `extract_s`; a client error names `param`."""
    started = time.perf_counter()
    try:
        batch = decode()
    except (InvalidRequest, UnprocessableInput, PayloadTooLarge) as exc:
        exc.param = param
        raise
    return batch.with_meta(extract_s=time.perf_counter() - started)


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
        found = {"found": sniffed.kind.value} if sniffed.kind else None
        raise UnprocessableInput(
            _wrong_kind(expected, sniffed.kind, sniffed.format, param),
            code="unsupported_media",
            details=found,  # what it is: the API layer can say where to send it instead
        )
    if expected is MediaKind.IMAGE:
        return decode_image(data, sniffed.format, settings)
    return _decode_video(data, options, settings)


def _wrong_kind(expected: MediaKind, found: MediaKind | None, fmt: str, param: str | None) -> str:
    where = param or f"the {expected.value}"
    if found is None:
        return (
            f"{where} is not a {expected.value} (its bytes look like {fmt}); "
            f"send {SUPPORTED[expected]}"
        )
    return f"{where} holds a {fmt} {found.value}, not a {expected.value}"


def _decode_video(
    data: bytes, options: SamplingOptions, settings: ExtractionSettings
) -> FrameBatch:
    with as_file(data) as path:
        return _decode_video_file(path, options, settings)


def extract_file(
    path: str,
    options: SamplingOptions,
    settings: ExtractionSettings,
    index: VideoIndex | None = None,
    param: str | None = None,
) -> FrameBatch:
    """`extract` for a video already in a file (a job's video: read in place, not copied);
    `index`: its probe, when the caller keeps it."""
    return _timed(
        lambda: _decode_video_file(path, options, settings, index), param or MediaKind.VIDEO
    )


def _decode_video_file(
    path: str,
    options: SamplingOptions,
    settings: ExtractionSettings,
    index: VideoIndex | None = None,
) -> FrameBatch:
    if not os.path.isfile(path):
        raise UnprocessableInput(f"the video file {path} is gone", code="missing_file")
    index = index or probe(path, settings)
    if index is not None:
        _check_not_truncated(index, index.header_frames)
        fps = index.fps if index.fps > 0 else nominal_fps(index.times_s)
        chosen = choose(index.frame_count, fps, options, settings, index=index, path=path)
        return read_frames(path, chosen, index, fps, settings)
    # No packet index (rare containers): the header's count, else count by grabbing.
    with open_capture(path) as capture:
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    limits.check_pixels(width, height, settings, "a frame of the video")
    limits.check_frames(total, settings)
    total = total if total > 0 else count_frames(path, settings)
    chosen = choose(total, fps, options, settings)
    plan = plan_reads(chosen, None)
    limits.check_decode_work(plan.decodes, width * height, settings)
    return frame_reader.read(path, plan, None, fps, settings, total=total)


def read_frames(
    path: str,
    chosen: list[int],
    index: VideoIndex,
    fps: float,
    settings: ExtractionSettings,
    *,
    budget_frames: int | None = None,
) -> FrameBatch:
    """Decode the `chosen` frames (sorted) of the video at `path` by the cheapest plan: with
    PyAV where it can read the stream (av_read), else OpenCV, in order when a seek turns out
    not to be frame-accurate. Frames are sized for a budget shared by `budget_frames` (default:
    all the chosen)."""
    if av_read.can_read(index):
        # PyAV seeks by presentation time: exact on variable frame rates too.
        plan = plan_reads(chosen, index.keyframes, PYAV_READER)
        limits.check_decode_work(plan.decodes, index.pixels, settings)
        try:
            return frame_reader.read(
                path,
                plan,
                index,
                fps,
                settings,
                budget_frames=budget_frames,
                read=frame_reader.read_part_av,
            )
        except av_read.Unsuitable as exc:
            logger.debug("reading with OpenCV, not PyAV: %s", exc)
        except av_read.Missed as exc:
            logger.warning("PyAV's frames do not match the index (%s); reading with OpenCV", exc)
    # OpenCV seeks by frame number, which it derives from time: wrong on variable frame rates.
    keyframes = None if is_variable_rate(index.times_s) else index.keyframes
    try:
        plan = plan_reads(chosen, keyframes)
        limits.check_decode_work(plan.decodes, index.pixels, settings)
        return frame_reader.read(path, plan, index, fps, settings, budget_frames=budget_frames)
    except frame_reader.SeekMissed as exc:
        logger.warning("seeking is not frame-accurate here (%s); reading in order", exc)
    plan = plan_reads(chosen, None)
    return frame_reader.read(path, plan, index, fps, settings, budget_frames=budget_frames)


def _check_not_truncated(index: VideoIndex, header_total: int) -> None:
    """The container's header promises `header_total` frames; far fewer packets: truncated."""
    slack = max(COUNT_SLACK_FRAMES, int(header_total * COUNT_SLACK_RATIO))
    if header_total > 0 and index.frame_count < header_total - slack:
        raise UnprocessableInput(
            f"the video is truncated or corrupt: its header promises {header_total} frames but "
            f"only {index.frame_count} are in the file",
            code="corrupt_media",
        )
