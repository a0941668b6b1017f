"""Following a read plan: seek or grab to each chosen frame of a video, and only those are
converted and resized, by OpenCV (`read_part`) or PyAV (`read_part_av`). A long plan is cut into
parts read side by side, each into its slots of one `Output` array."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import cv2
import numpy as np

from deploy.config.settings import ExtractionSettings
from deploy.core.errors import UnprocessableInput
from deploy.core.messages import FrameBatch, MediaKind
from deploy.video import av_read, limits
from deploy.video.capture import open_capture
from deploy.video.probe import VideoIndex
from deploy.video.read_plan import Plan, read_costs, split
from deploy.video.resize import frame_size, to_rgb
from deploy.video.threads import THREADS, parts_convert_alone

logger = logging.getLogger("ray.serve.vidserve.extract")

# A header may overstate the frame count by a little; past this, stopping early means truncation.
COUNT_SLACK_FRAMES = 2
COUNT_SLACK_RATIO = 0.01


class SeekMissed(Exception):
    """A seek landed on another frame than asked (some containers and codecs)."""


# Below this many frame decodes, opening a second decoder costs more than it saves.
_PARALLEL_MIN_DECODES = 120


@dataclasses.dataclass
class Part:
    kept: list[int]
    stamps: list[float]
    last_decoded: int


class PartReader(Protocol):
    def __call__(
        self,
        path: str,
        plan: Plan,
        index: VideoIndex | None,
        fps: float,
        output: Output,
        *,
        start: int,
        threads: int | None,
    ) -> Part: ...


def read(
    path: str,
    plan: Plan,
    index: VideoIndex | None,
    fps: float,
    settings: ExtractionSettings,
    *,
    total: int | None = None,
    budget_frames: int | None = None,
    read: PartReader | None = None,
) -> FrameBatch:
    """Follow the plan with `read` (default: OpenCV's read_part): seek or grab to each chosen
    frame; only those are converted and resized. A long plan is cut into parts of equal
    estimated cost (plan.split, costs from the packet sizes), one per CPU (use_cpus), each on
    its own single-threaded decoder: decoders running side by side use the cores better than
    one decoder's frame threads, and each part converts its own frames."""
    total = index.frame_count if index is not None else int(total or 0)
    wanted = [step.target for step in plan.steps]
    output = Output(len(wanted), budget_frames or len(wanted), settings)
    workers = THREADS.cpus if plan.decodes >= _PARALLEL_MIN_DECODES else 1
    costs = None
    if workers > 1 and index is not None and index.packet_sizes and index.pixels:
        costs = read_costs(index.packet_sizes, index.pixels, plan.reader)
    parts = split(plan, workers, costs)
    starts = list(itertools.accumulate((len(part.steps) for part in parts), initial=0))
    read = read or read_part
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
    return FrameBatch.of(
        kind=MediaKind.VIDEO,
        frames=output.frames[: len(kept)],
        indices=kept,
        timestamps_s=stamps,
        source_fps=fps,
        duration_s=duration,
        source_width=output.source_size[1],
        source_height=output.source_size[0],
        total_frames=total,
        reader="pyav" if read is read_part_av else "opencv",
    )


class Output:
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


def read_part(
    path: str,
    plan: Plan,
    index: VideoIndex | None,
    fps: float,
    output: Output,
    *,
    start: int,
    threads: int | None,
) -> Part:
    """Read one plan on its own capture; its frames go to `output` from position `start`."""
    part = Part([], [], -1)
    position = 0  # the frame the next grab decodes
    with open_capture(path, threads) as capture:
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


def read_part_av(
    path: str,
    plan: Plan,
    index: VideoIndex | None,
    fps: float,
    output: Output,
    *,
    start: int,
    threads: int | None,
) -> Part:
    """Read one plan with PyAV (av_read); needs the probe's index."""
    if index is None:
        raise av_read.Unsuitable("no packet index to number frames by")
    kept, stamps, last = av_read.read_part(
        path, plan, index, output, start=start, threads=threads or THREADS.cpus
    )
    return Part(kept, stamps, last)


def _check_landed(capture: cv2.VideoCapture, target: int, index: VideoIndex, fps: float) -> None:
    decoded = float(capture.get(cv2.CAP_PROP_POS_MSEC)) / 1000.0
    expected = index.times_s[target] - index.times_s[0]
    half_frame = 0.5 / fps if fps > 0 else 0.02
    if abs(decoded - expected) > half_frame:
        raise SeekMissed(f"asked frame {target} at {expected:.3f}s, got {decoded:.3f}s")


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
    slack = max(COUNT_SLACK_FRAMES, int(total * COUNT_SLACK_RATIO))
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
