"""Windows on the wall clock: numbered by time (a resumed stream goes on with the window of the
moment), frames chosen at evenly spaced times, a window handed on at the first frame past it."""

from __future__ import annotations

import numpy as np

from deploy.streams.windows import Window, Windower

ORIGIN = 1_000_000.0


def _feed(windower: Windower, times: list[float]) -> list[Window]:
    closed = []
    for t in times:
        window = windower.offer(ORIGIN + t, lambda t=t: np.full((2, 2, 3), int(t * 10) % 255))
        if window is not None:
            closed.append(window)
    return closed


def test_frames_at_evenly_spaced_times_and_windows_by_time() -> None:
    windower = Windower(ORIGIN, window_s=2.0, frames_per_window=4)
    frames_at_30fps = [i / 30 for i in range(int(6.1 * 30))]
    windows = _feed(windower, frames_at_30fps)
    assert [w.index for w in windows] == [0, 1, 2]
    for w in windows:
        assert (w.start_s, w.end_s) == (2.0 * w.index, 2.0 * w.index + 2.0)
        # slots at 0.25, 0.75, 1.25, 1.75 s into the window: the first frame at or after each
        assert np.allclose(w.times_s, [0.267, 0.767, 1.267, 1.767], atol=0.04)
        assert len(w.frames) == 4


def test_a_stall_takes_one_frame_not_the_same_one_twice() -> None:
    windower = Windower(ORIGIN, window_s=4.0, frames_per_window=4)
    (window,) = _feed(windower, [0.6, 3.9, 4.1])  # nothing between 0.6 and 3.9 s
    assert window.times_s == [0.6, 3.9]


def test_a_gap_skips_window_numbers_and_a_flush_hands_on_the_partial_window() -> None:
    windower = Windower(ORIGIN, window_s=2.0, frames_per_window=2)
    closed = _feed(windower, [0.6, 1.6, 9.6])  # the source away from 2 s to 9.6 s
    assert [w.index for w in closed] == [0]
    partial = windower.flush()
    assert partial is not None
    assert partial.index == 4
    assert partial.times_s == [1.6]
    assert windower.flush() is None


def test_only_kept_frames_are_converted() -> None:
    converted: list[float] = []
    windower = Windower(ORIGIN, window_s=1.0, frames_per_window=2)
    for i in range(61):
        t = i / 30
        windower.offer(ORIGIN + t, lambda t=t: converted.append(t) or np.zeros((1, 1, 3)))
    assert len(converted) == 4  # two a window, of the 60 frames in two windows


def test_sound_goes_with_the_window_being_filled() -> None:
    windower = Windower(ORIGIN, window_s=1.0, frames_per_window=1)
    windower.hear(np.zeros(160, np.float32))  # before any frame: no window to keep it
    windower.offer(ORIGIN + 0.6, lambda: np.zeros((1, 1, 3)))
    windower.hear(np.zeros(8000, np.float32))
    windower.hear(np.zeros(8000, np.float32))
    closed = windower.offer(ORIGIN + 1.1, lambda: np.zeros((1, 1, 3)))
    assert closed is not None
    assert closed.audio_s == 1.0
    assert windower.offer(ORIGIN + 1.6, lambda: np.zeros((1, 1, 3))) is None
    windower.hear(np.zeros(1600, np.float32))
    partial = windower.flush()
    assert partial is not None
    assert partial.audio_s == 0.1
