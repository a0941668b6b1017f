"""Reading a plan's frames with PyAV, for the streams it reads more cheaply than OpenCV.

OpenCV's `retrieve()` converts every kept frame to BGR at full size before it can be shrunk to
the model's size (1.4 ms for a 1080p frame, then 1.4 ms to shrink it); PyAV hands over the
decoded YUV planes, which are shrunk first and converted at the small size (~1 ms for both at
1080p). Its seek also lands on the target's own keyframe, where OpenCV's backs off 16 frames
and decodes frame 0 first (plan.PYAV_READER). Decoding is the same libavcodec either way.

It reads 8-bit 4:2:0 video in limited range (yuv420p: nearly every H.264, H.265, VP9 and AV1
file) without a display matrix; anything else (10-bit, 4:4:4, gray, full range, rotated) raises
`Unsuitable` before a frame is kept and is read by OpenCV, which converts those. The conversion
uses BT.601 coefficients, as OpenCV's does, so both readers give the same colours (to within
resampling: a mean difference of ~2/255, tested).

Frames are numbered by their presentation time matched against the probe's index, never by
counting, so a seek that lands elsewhere than planned is caught (`Missed`), not misnumbered.

Frames that no other frame refers to (most B-frames) are not decoded unless the plan keeps them:
each packet is looked up by its presentation time before it goes to the decoder, which is told
to discard it (`skip_frame` NONREF) when it is not a target. The frames kept are bit for bit
those of a full decode, since nothing depends on a discarded frame; on x264's default encoding
(B-frames) it saves about a third of the decoding (`python bench/extract.py --skip`). Streams
without such frames (x264's ultrafast, most cameras) decode as before.
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import cv2
import numpy as np

from deploy.video.probe import VideoIndex
from deploy.video.read_plan import Plan, landing
from deploy.video.resize import shrink

av: Any
try:
    import av
except ImportError:  # PyAV is a dependency; without it OpenCV reads every video
    av = None

_JPEG_RANGE = 2  # AVCOL_RANGE_JPEG: full-range YUV


class Unsuitable(Exception):
    """This stream is not one this reader converts (see the module's docstring)."""


class Missed(Exception):
    """A decoded frame is not the one the plan expected there (a seek landed elsewhere, or
    timestamps that do not match the index)."""


class Slots(Protocol):
    def slot(self, position: int, source: tuple[int, int]) -> np.ndarray:
        """Where the frame kept at `position` goes (RGB at the batch's size); `source` is the
        decoded frame's (height, width)."""
        ...


def can_read(index: VideoIndex) -> bool:
    """Worth trying: PyAV is installed and the decoder outputs 8-bit 4:2:0."""
    return av is not None and index.pixel_format == "I420"


def read_part(
    path: str, plan: Plan, index: VideoIndex, output: Slots, *, start: int, threads: int
) -> tuple[list[int], list[float], int]:
    """Follow `plan` (made with plan.PYAV_READER) on a decoder with `threads` threads, its
    frames into `output` from `start`: (frames kept, their timestamps, last frame decoded)."""
    kept: list[int] = []
    stamps: list[float] = []
    last = -1
    with open_frames(path, index, threads, [step.target for step in plan.steps]) as frames:
        for step in plan.steps:
            if step.seek:
                frames.seek(landing(step.target, plan.keyframes or [0], plan.reader))
            frame, last = frames.advance_to(step.target, last)
            if frame is None:
                break  # the video ended (or broke) before it
            _convert(frame, output.slot(start + len(kept), (frame.height, frame.width)))
            kept.append(step.target)
            stamps.append(round(index.times_s[step.target] - index.times_s[0], 6))
    return kept, stamps, last


@contextmanager
def open_frames(
    path: str, index: VideoIndex, threads: int, targets: Collection[int] | None = None
) -> Iterator[Frames]:
    """The decoded frames of the first video stream of `path`, on a decoder with `threads`
    threads; `Unsuitable` when PyAV cannot open it or does not read its format. With `targets`
    (frame indices), non-reference frames that are not among them are discarded undecoded."""
    try:
        # Metadata is not read here: bytes that are not UTF-8 in it must not fail the open.
        container = av.open(path, metadata_errors="replace")
    except av.FFmpegError as exc:  # OpenCV then reports what is wrong with the file
        raise Unsuitable(f"PyAV cannot open it: {exc}") from exc
    with container:
        if not container.streams.video:
            raise Unsuitable("PyAV finds no video stream")
        # The first, as OpenCV (and so the probe) reads, not FFmpeg's "best" (the largest).
        stream = container.streams.video[0]
        _check_format(stream.codec_context.format, stream.codec_context.color_range)
        stream.thread_type = "AUTO" if threads > 1 else "SLICE"
        stream.codec_context.thread_count = threads
        yield Frames(container, stream, index, targets)


class Frames:
    """A stream's decoded frames, each with its presentation index."""

    def __init__(
        self,
        container: Any,
        stream: Any,
        index: VideoIndex,
        targets: Collection[int] | None = None,
    ) -> None:
        self._container = container
        self._stream = stream
        self._times = index.times_s
        self._time_base = float(stream.time_base)
        self._start = stream.start_time or 0
        steps = np.diff(np.asarray(index.times_s))
        self._half_frame = float(steps.min()) / 2 if len(steps) else 0.02
        self._targets = None if targets is None else frozenset(targets)
        self._decoded = self._decode()
        self._checked = False
        self.decoded = 0  # frames the decoder gave (the discarded ones are not among them)

    def seek(self, keyframe: int) -> None:
        """To `keyframe` (a timestamp half a frame past it: seeking goes back to the keyframe
        at or before a timestamp, and rounding must not send it a GOP further back)."""
        seconds = self._times[keyframe] + self._half_frame
        try:
            self._container.seek(
                self._start + round(seconds / self._time_base), stream=self._stream, backward=True
            )
        except av.FFmpegError as exc:
            raise Missed(f"seeking to frame {keyframe} failed: {exc}") from exc
        self._decoded = self._decode()

    def _decode(self) -> Iterator[Any]:
        """The stream's frames from where the container is, each packet that is not a target
        sent with `skip_frame` NONREF: the decoder drops it if no frame refers to it."""
        if self._targets is None:
            yield from self._container.decode(self._stream)
            return
        codec = self._stream.codec_context
        skipping = False
        for packet in self._container.demux(self._stream):
            skip = not self._wanted(packet.pts)
            if skip != skipping:  # frame threads take the setting with the packet
                codec.skip_frame = "NONREF" if skip else "DEFAULT"
                skipping = skip
            yield from codec.decode(packet)

    def _wanted(self, pts: int | None) -> bool:
        """Whether the packet at `pts` must be decoded in full: a target, or one that cannot
        be placed (no timestamp, none of the index's times; the flush packet at the end)."""
        if pts is None:
            return True
        i = self._index_at((pts - self._start) * self._time_base)
        return i is None or i in (self._targets or ())

    def advance_to(self, target: int, last: int) -> tuple[Any, int]:
        """Decode up to frame `target`: (that frame or None at the end, last index decoded)."""
        while True:
            try:
                frame = next(self._decoded, None)
            except av.FFmpegError:
                frame = None  # broken data: stop here as OpenCV does; the caller reports it
            if frame is None:
                return None, last
            self.decoded += 1
            if not self._checked:
                _check_format(frame.format, frame.color_range)
                if frame.rotation:
                    raise Unsuitable(f"rotated by {frame.rotation} degrees")
                self._checked = True
            number = self._number(frame)
            if number > target:
                raise Missed(f"asked frame {target}, decoding went on from frame {number}")
            if number == target:
                return frame, number
            last = number

    def _number(self, frame: Any) -> int:
        if frame.pts is None:
            raise Missed("a decoded frame has no timestamp")
        seconds = (frame.pts - self._start) * self._time_base
        i = self._index_at(seconds)
        if i is None:
            raise Missed(f"no frame of the index at {seconds:.3f}s")
        return i

    def _index_at(self, seconds: float) -> int | None:
        """The index's frame at `seconds` (within half a frame), or None."""
        i = bisect.bisect_left(self._times, seconds - self._half_frame)
        if i == len(self._times) or abs(self._times[i] - seconds) > self._half_frame:
            return None
        return i


def _check_format(pixel_format: Any, color_range: int) -> None:
    name = pixel_format.name if pixel_format is not None else "unknown"
    if name != "yuv420p" or color_range == _JPEG_RANGE:
        raise Unsuitable(f"{name}, range {color_range}")


def _convert(frame: Any, out: np.ndarray) -> None:
    """Shrink the Y, U and V planes to `out`'s size, then convert to RGB at that size."""
    height, width = out.shape[:2]
    if height % 2 or width % 2:  # I420 needs even sides: let FFmpeg scale and convert
        out[...] = frame.to_ndarray(width=width, height=height, format="rgb24")
        return
    area = height * width
    i420 = np.empty(area * 3 // 2, np.uint8)
    targets = (
        i420[:area].reshape(height, width),
        i420[area : area * 5 // 4].reshape(height // 2, width // 2),
        i420[area * 5 // 4 :].reshape(height // 2, width // 2),
    )
    for plane, target in zip(frame.planes, targets, strict=True):
        pixels = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        shrink(pixels[:, : plane.width], target.shape, out=target)
    cv2.cvtColor(i420.reshape(height * 3 // 2, width), cv2.COLOR_YUV2RGB_I420, dst=out)
