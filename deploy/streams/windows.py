"""Cutting a live stream into windows on the wall clock, and choosing each window's frames.

Window k covers [k * window_s, (k + 1) * window_s) seconds after the stream was created, on
the wall clock: numbering is by time, so a stream resumed on another replica, or back after
its source dropped, goes on with the window of the moment (the numbers skip the time it was
away) and never records one window twice. A window's frames are the first to arrive at or
after each of `frames_per_window` evenly spaced times in it; only those are converted (RGB, at
the model's size); the others are decoded (a live codec needs them) and let go. A window is
handed on when the first frame past its end arrives, or when the source drops (with the frames
it has). With the speech track, the sound that arrives while a window is filled is kept with
it."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deploy.core.speech import SAMPLE_RATE


@dataclass
class Window:
    index: int
    start_s: float  # seconds since the stream was created
    end_s: float
    frames: list[np.ndarray] = field(default_factory=list)
    times_s: list[float] = field(default_factory=list)  # each frame's, since start_s
    audio: list[np.ndarray] = field(default_factory=list)  # 16 kHz mono, as it came

    @property
    def audio_s(self) -> float:
        return sum(len(piece) for piece in self.audio) / SAMPLE_RATE


class Windower:
    def __init__(self, origin: float, window_s: float, frames_per_window: int) -> None:
        self._origin = origin
        self._window_s = window_s
        self._count = frames_per_window
        self._current: Window | None = None
        self._next_slot = 0

    def offer(self, now: float, convert: Callable[[], np.ndarray]) -> Window | None:
        """A frame arrived at wall time `now` (`convert` gives its pixels if it is kept); the
        window it closed, if any."""
        t = now - self._origin
        index = math.floor(t / self._window_s)
        closed = None
        if self._current is None or index != self._current.index:
            closed = self.flush()
            start = index * self._window_s
            self._current = Window(index, round(start, 3), round(start + self._window_s, 3))
            self._next_slot = 0
        window = self._current
        within = t - window.start_s
        spacing = self._window_s / self._count
        if self._next_slot < self._count and within >= (self._next_slot + 0.5) * spacing:
            window.frames.append(convert())
            window.times_s.append(round(within, 3))
            # A gap of several slots (a stall) takes one frame, not the same one twice.
            self._next_slot = max(self._next_slot + 1, math.floor(within / spacing + 0.5))
        return closed

    def hear(self, samples: np.ndarray) -> None:
        """Sound that came with the frames: the window being filled keeps it (sound before a
        window's first frame goes with the window before, which the frame then closes)."""
        if self._current is not None:
            self._current.audio.append(samples)

    def flush(self) -> Window | None:
        """Hand on the window being filled, if it has a frame (the source dropped)."""
        window, self._current = self._current, None
        if window is None or not window.frames:
            return None
        return window


def pixels(frame: Any, size: tuple[int, int]) -> np.ndarray:
    """A decoded PyAV frame as RGB at `size` (height, width): FFmpeg scales and converts in
    one pass, at the small size."""
    height, width = size
    array: np.ndarray = frame.to_ndarray(width=width, height=height, format="rgb24")
    return array
