"""OpenCV decoding of uploaded bytes into sampled, resized RGB frames.

Blocking: the deployment runs these functions in a worker thread, never on the event loop.
Only the frames that are kept are retrieved, converted and resized; the others are `grab()`bed.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Protocol

import cv2
import numpy as np

from deploy.config.settings import ExtractionSettings
from deploy.core.errors import InvalidRequest, PayloadTooLarge, UnprocessableInput
from deploy.core.messages import FrameBatch, MediaKind, SamplingOptions, Strategy
from deploy.video import av_read, limits
from deploy.video.container import sniff
from deploy.video.images import decode_image
from deploy.video.probe import VideoIndex, probe
from deploy.video.read_plan import PYAV_READER, Plan, plan_reads, read_costs, split
from deploy.video.resize import frame_size, to_rgb
from deploy.video.sampling import (
    fps_indices,
    keyframe_indices,
    scene_indices,
    time_indices,
    uniform_indices,
    window,
)
from deploy.video.threads import THREADS, parts_convert_alone

logger = logging.getLogger("ray.serve.vidserve.extract")

_SUPPORTED = {
    MediaKind.VIDEO: "an MP4, MOV, MKV, WebM or AVI video",
    MediaKind.IMAGE: "a JPEG, PNG, WebP or BMP image",
}
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
            f"send {_SUPPORTED[expected]}"
        )
    return f"{where} holds a {fmt} {found.value}, not a {expected.value}"


def _fits_in_shm(size: int) -> bool:
    """Docker's default /dev/shm is 64 MB: use it only with room to spare."""
    if not (os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK)):
        return False
    return shutil.disk_usage("/dev/shm").free > 2 * size


@contextmanager
def _as_file(data: bytes) -> Iterator[str]:
    """OpenCV's FFmpeg backend reads files: put the bytes in memory-backed tmp when there is one."""
    directory = "/dev/shm" if _fits_in_shm(len(data)) else None
    with tempfile.NamedTemporaryFile(dir=directory, prefix="vidserve-", suffix=".video") as handle:
        handle.write(data)
        handle.flush()
        yield handle.name


@contextmanager
def _open(path: str, threads: int | None = None) -> Iterator[cv2.VideoCapture]:
    """A capture on `path`; its decoder uses `threads` threads (default: all of use_cpus)."""
    params = [cv2.CAP_PROP_N_THREADS, threads or THREADS.cpus]
    capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG, params)
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
        fps = index.fps if index.fps > 0 else _nominal_fps(index.times_s)
        chosen = _choose(index.frame_count, fps, options, settings, index=index, path=path)
        return read_frames(path, chosen, index, fps, settings)
    # No packet index (rare containers): the header's count, else count by grabbing.
    with _open(path) as capture:
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    limits.check_pixels(width, height, settings, "a frame of the video")
    limits.check_frames(total, settings)
    total = total if total > 0 else _count_frames(path, settings)
    chosen = _choose(total, fps, options, settings)
    plan = plan_reads(chosen, None)
    limits.check_decode_work(plan.decodes, width * height, settings)
    return _read(path, plan, None, fps, settings, total=total)


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
            return _read(
                path, plan, index, fps, settings, budget_frames=budget_frames, read=_read_part_av
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
        return _read(path, plan, index, fps, settings, budget_frames=budget_frames)
    except _SeekMissed as exc:
        logger.warning("seeking is not frame-accurate here (%s); reading in order", exc)
    plan = plan_reads(chosen, None)
    return _read(path, plan, index, fps, settings, budget_frames=budget_frames)


def _check_not_truncated(index: VideoIndex, header_total: int) -> None:
    """The container's header promises `header_total` frames; far fewer packets: truncated."""
    slack = max(_COUNT_SLACK_FRAMES, int(header_total * _COUNT_SLACK_RATIO))
    if header_total > 0 and index.frame_count < header_total - slack:
        raise UnprocessableInput(
            f"the video is truncated or corrupt: its header promises {header_total} frames but "
            f"only {index.frame_count} are in the file",
            code="corrupt_media",
        )


class _SeekMissed(Exception):
    """A seek landed on another frame than asked (some containers and codecs)."""


def _nominal_fps(times: list[float]) -> float:
    span = times[-1] - times[0]
    return (len(times) - 1) / span if span > 0 else 0.0


def is_variable_rate(times: list[float], tolerance: float = 0.1) -> bool:
    """Whether frame intervals differ by more than `tolerance` of their median."""
    if len(times) < 3:
        return False
    steps = np.diff(np.asarray(times))
    median = float(np.median(steps))
    return median <= 0 or float(np.abs(steps - median).max()) > tolerance * median


def _count_frames(path: str, settings: ExtractionSettings) -> int:
    """Containers without a frame count in their header: count with a grab-only pass (stopped
    at the frame limit)."""
    with _open(path) as capture:
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


def _choose(
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
    return [span.start + i for i in uniform_indices(len(span), count)]


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
    rate = index.fps if index.fps > 0 else _nominal_fps(index.times_s)
    step = max(1, round(rate / settings.scene_analysis_fps)) if rate > 0 else 1
    candidates = list(range(span.start, span.stop, step))
    keyframes = None if is_variable_rate(index.times_s) else index.keyframes
    thumbs: list[np.ndarray] = []
    plan = plan_reads(candidates, keyframes)
    limits.check_decode_work(plan.decodes, index.pixels, settings)
    with _open(path) as capture:
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


# Below this many frame decodes, opening a second decoder costs more than it saves.
_PARALLEL_MIN_DECODES = 120


@dataclasses.dataclass
class _Part:
    kept: list[int]
    stamps: list[float]
    last_decoded: int


class _PartReader(Protocol):
    def __call__(
        self,
        path: str,
        plan: Plan,
        index: VideoIndex | None,
        fps: float,
        output: _Output,
        *,
        start: int,
        threads: int | None,
    ) -> _Part: ...


def _read(
    path: str,
    plan: Plan,
    index: VideoIndex | None,
    fps: float,
    settings: ExtractionSettings,
    *,
    total: int | None = None,
    budget_frames: int | None = None,
    read: _PartReader | None = None,
) -> FrameBatch:
    """Follow the plan with `read` (default: OpenCV's _read_part): seek or grab to each chosen
    frame; only those are converted and resized. A long plan is cut into parts of equal
    estimated cost (plan.split, costs from the packet sizes), one per CPU (use_cpus), each on
    its own single-threaded decoder: decoders running side by side use the cores better than
    one decoder's frame threads, and each part converts its own frames."""
    total = index.frame_count if index is not None else int(total or 0)
    wanted = [step.target for step in plan.steps]
    output = _Output(len(wanted), budget_frames or len(wanted), settings)
    workers = THREADS.cpus if plan.decodes >= _PARALLEL_MIN_DECODES else 1
    costs = None
    if workers > 1 and index is not None and index.packet_sizes and index.pixels:
        costs = read_costs(index.packet_sizes, index.pixels, plan.reader)
    parts = split(plan, workers, costs)
    starts = list(itertools.accumulate((len(part.steps) for part in parts), initial=0))
    read = read or _read_part
    if len(parts) == 1:
        segments = [read(path, plan, index, fps, output, start=0, threads=None)]
    else:
        with (
            parts_convert_alone(),
            ThreadPoolExecutor(len(parts), thread_name_prefix="vidserve-decode") as pool,
        ):
            futures = [
                pool.submit(read, path, part, index, fps, output, start=start, threads=1)
                for part, start in zip(parts, starts, strict=False)
            ]
            segments = [future.result() for future in futures]
    kept: list[int] = []
    stamps: list[float] = []
    last_decoded = -1
    for part, segment in zip(parts, segments, strict=True):
        kept += segment.kept
        stamps += segment.stamps
        last_decoded = segment.last_decoded
        if len(segment.kept) < len(part.steps):
            break  # the video ended (or broke) here: what follows is not a prefix
    _check_complete(kept, wanted, last_decoded, total)
    if output.frames is None:
        raise UnprocessableInput("no frame of the video could be decoded", code="corrupt_media")
    duration = index.duration_s if index is not None else (total / fps if fps > 0 else 0.0)
    return FrameBatch(
        kind=MediaKind.VIDEO,
        frames=output.frames[: len(kept)],
        indices=kept,
        timestamps_s=stamps,
        source_fps=fps,
        duration_s=duration,
        source_width=output.source_size[1],
        source_height=output.source_size[0],
        total_frames=total,
        reader="pyav" if read is _read_part_av else "opencv",
    )


class _Output:
    """The batch's frames: allocated once the first decoded frame gives the source size, then
    filled in place (by every part of a plan, from their threads)."""

    def __init__(self, count: int, budget_frames: int, settings: ExtractionSettings) -> None:
        self._count = count
        self._budget_frames = budget_frames
        self._settings = settings
        self._lock = threading.Lock()
        self.frames: np.ndarray | None = None
        self.source_size = (0, 0)

    def slot(self, position: int, source: tuple[int, int]) -> np.ndarray:
        """Where the frame kept at `position` goes; `source` is its decoded (height, width)."""
        with self._lock:
            if self.frames is None:
                # The decoder's own size, whatever the header said.
                limits.check_pixels(source[1], source[0], self._settings, "a decoded frame")
                self.source_size = source
                height, width = frame_size(source, self._budget_frames, self._settings)
                self.frames = np.empty((self._count, height, width, 3), np.uint8)
        slot: np.ndarray = self.frames[position]
        return slot

    def put(self, position: int, bgr: np.ndarray) -> None:
        out = self.slot(position, (bgr.shape[0], bgr.shape[1]))
        to_rgb(bgr, (out.shape[0], out.shape[1]), out=out)


def _read_part(
    path: str,
    plan: Plan,
    index: VideoIndex | None,
    fps: float,
    output: _Output,
    *,
    start: int,
    threads: int | None,
) -> _Part:
    """Read one plan on its own capture; its frames go to `output` from position `start`."""
    part = _Part([], [], -1)
    position = 0  # the frame the next grab decodes
    with _open(path, threads) as capture:
        for step in plan.steps:
            if step.seek:
                capture.set(cv2.CAP_PROP_POS_FRAMES, step.target)
                position = step.target
            while position <= step.target and capture.grab():
                part.last_decoded = position
                position += 1
            if part.last_decoded != step.target:
                break  # the video ended early
            ok, bgr = capture.retrieve()
            if not ok:
                break
            stamp = _timestamp(capture, step.target, fps, index)
            if step.seek and index is not None:
                _check_landed(capture, step.target, index, fps)
            output.put(start + len(part.kept), bgr)
            part.kept.append(step.target)
            part.stamps.append(stamp)
    return part


def _read_part_av(
    path: str,
    plan: Plan,
    index: VideoIndex | None,
    fps: float,
    output: _Output,
    *,
    start: int,
    threads: int | None,
) -> _Part:
    """Read one plan with PyAV (av_read); needs the probe's index."""
    if index is None:
        raise av_read.Unsuitable("no packet index to number frames by")
    kept, stamps, last = av_read.read_part(
        path, plan, index, output, start=start, threads=threads or THREADS.cpus
    )
    return _Part(kept, stamps, last)


def _check_landed(capture: cv2.VideoCapture, target: int, index: VideoIndex, fps: float) -> None:
    decoded = float(capture.get(cv2.CAP_PROP_POS_MSEC)) / 1000.0
    expected = index.times_s[target] - index.times_s[0]
    half_frame = 0.5 / fps if fps > 0 else 0.02
    if abs(decoded - expected) > half_frame:
        raise _SeekMissed(f"asked frame {target} at {expected:.3f}s, got {decoded:.3f}s")


def _timestamp(
    capture: cv2.VideoCapture, index: int, fps: float, video: VideoIndex | None
) -> float:
    """The frame's presentation time from the index (true for variable frame rates), else the
    decoder's, else index / fps."""
    if video is not None:
        return round(video.times_s[index] - video.times_s[0], 6)
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
