"""An index of a video without decoding it: every frame's presentation time and the keyframes.

OpenCV's FFmpeg backend opened with `CAP_PROP_FORMAT = -1` returns raw packets from `grab()`
(demuxing only, no decoding): per packet its presentation time (`CAP_PROP_POS_MSEC`) and whether
it is a keyframe (`CAP_PROP_LRF_HAS_KEY_FRAME`), and `retrieve()` gives the packet itself, whose
size estimates what decoding it costs (plan.read_costs). Packets come in decode order; sorting their
times gives presentation order, so B-frames and variable frame rates are handled. This pass
reads the file once and costs milliseconds per thousand frames; it gives the exact frame count
(headers may be wrong), true timestamps, and the keyframes the read plan (plan.py) needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from deploy.config.settings import ExtractionSettings
from deploy.video import limits


@dataclass(frozen=True)
class VideoIndex:
    times_s: list[float]  # presentation time of every frame, in presentation order
    keyframes: list[int]  # presentation indices of the keyframes, sorted
    fps: float  # the header's (nominal) frame rate
    header_frames: int = 0  # the frame count the header claims (0: none)
    packet_sizes: list[int] = field(default_factory=list)  # bytes per frame, presentation order
    pixels: int = 0  # width x height of a frame as coded (0: unknown)
    pixel_format: str = ""  # the decoder's, as a FourCC: "I420" for 8-bit 4:2:0 ("": unknown)

    @property
    def frame_count(self) -> int:
        return len(self.times_s)

    @property
    def duration_s(self) -> float:
        if not self.times_s:
            return 0.0
        step = 1.0 / self.fps if self.fps > 0 else 0.0
        return self.times_s[-1] - self.times_s[0] + step


def probe(path: str, settings: ExtractionSettings | None = None) -> VideoIndex | None:
    """The index, or None when the container gives no usable packet times (the caller then
    decodes sequentially and reads times from the decoder). With `settings`, its decoded-size
    limits (video/limits.py) are checked from the header first, then as packets are read: a
    stream far longer than its header says is stopped at the limit, not read to its end."""
    capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_FORMAT, -1])
    try:
        if not capture.isOpened():
            return None
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        header_frames = max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        pixels = width * height
        pixel_format = _fourcc(capture.get(cv2.CAP_PROP_CODEC_PIXEL_FORMAT))
        if settings is not None:
            limits.check_pixels(width, height, settings, "a frame of the video")
            limits.check_frames(header_frames, settings)
        times: list[float] = []
        keys: list[bool] = []
        sizes: list[int] = []
        while capture.grab():
            if settings is not None and len(times) % _CHECK_EVERY == 0:
                _check_so_far(times, settings)
            times.append(float(capture.get(cv2.CAP_PROP_POS_MSEC)) / 1000.0)
            keys.append(bool(capture.get(cv2.CAP_PROP_LRF_HAS_KEY_FRAME)))
            ok, packet = capture.retrieve()
            sizes.append(int(packet.size) if ok and packet is not None else 0)
    finally:
        capture.release()
    if settings is not None:
        _check_so_far(times, settings)
    if len(times) < 2 or len(set(times)) != len(times) or not any(keys):
        return None  # no per-packet times (or duplicates): not an index to trust
    order = np.argsort(np.asarray(times), kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    sorted_times = [round(times[i], 6) for i in order]
    keyframes = sorted(int(rank[i]) for i, key in enumerate(keys) if key)
    return VideoIndex(
        sorted_times,
        keyframes,
        fps,
        header_frames,
        packet_sizes=[sizes[i] for i in order],
        pixels=max(0, pixels),
        pixel_format=pixel_format,
    )


# Packets read between two checks of the limits (a check costs a few microseconds).
_CHECK_EVERY = 256


def _check_so_far(times: list[float], settings: ExtractionSettings) -> None:
    limits.check_frames(len(times), settings)
    if times:
        limits.check_duration(max(times[-1], 0.0), settings)


def _fourcc(value: float) -> str:
    code = int(value)
    return "".join(chr((code >> shift) & 0xFF) for shift in (0, 8, 16, 24)) if code > 0 else ""
