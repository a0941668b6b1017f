"""The audio track of a video (or an audio file), decoded with PyAV and resampled to what speech
models take: 16 kHz mono float32. Blocking: callers run it in a worker thread."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from fractions import Fraction

import av
import numpy as np

from deploy.core.errors import PayloadTooLarge, UnprocessableInput
from deploy.core.speech import SAMPLE_RATE, AudioClip


def has_audio_track(source: str | bytes) -> bool | None:
    """Whether a file (a path, or its bytes) has an audio track, from its header alone (no
    packet read); None when PyAV cannot open it (read_audio then says why)."""
    try:
        with av.open(io.BytesIO(source) if isinstance(source, bytes) else source) as container:
            return bool(container.streams.audio)
    except (av.FFmpegError, OSError, ValueError):
        return None


def read_audio(
    path: str,
    max_audio_s: float,
    start_s: float | None = None,
    end_s: float | None = None,
    param: str = "file",
) -> AudioClip | None:
    """The audio of `[start_s, end_s)` of the file at `path` (the whole track by default), or
    None when it has no audio track. 413 when the window is longer than `max_audio_s`; 422 when
    the file cannot be read as media."""
    started = time.perf_counter()
    try:
        container = av.open(path)
    except (av.FFmpegError, OSError) as exc:
        raise UnprocessableInput(
            f"{param} is not a video or audio file that can be decoded: {exc}",
            param=param,
            code="unsupported_media",
        ) from None
    with container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        total = _duration_s(container, stream)
        first = max(0.0, start_s or 0.0)
        last = min(total, end_s) if end_s is not None and total > 0 else (end_s or total)
        if last - first > max_audio_s:
            raise PayloadTooLarge(
                f"the audio to transcribe is {last - first:.0f} s long, longer than "
                f"speech.max_audio_s ({max_audio_s:.0f} s): send a shorter window (start_s, "
                "end_s) or raise the setting",
                param=param,
                code="max_audio_s_exceeded",
            )
        if first > 0:
            base = stream.time_base or Fraction(1, SAMPLE_RATE)
            container.seek(int(first / base), stream=stream, backward=True)
        samples = _decode(container, stream, first, last, max_audio_s)
    return AudioClip(
        samples=samples,
        start_s=first,
        duration_s=len(samples) / SAMPLE_RATE,
        source_duration_s=total,
        decode_s=time.perf_counter() - started,
    )


def _duration_s(container: av.container.InputContainer, stream: av.audio.AudioStream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return container.duration / av.time_base if container.duration else 0.0


def _decode(
    container: av.container.InputContainer,
    stream: av.audio.AudioStream,
    first: float,
    last: float,
    max_audio_s: float,
) -> np.ndarray:
    """Samples from `first` to `last` (0: to the end), resampled; stops at `max_audio_s` worth
    of samples whatever the header said."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    limit = int(max_audio_s * SAMPLE_RATE)
    pieces: list[np.ndarray] = []
    began: float | None = None  # the time of the first decoded frame (a seek lands before)
    kept = 0
    try:
        for frame, at in _frames(container, stream, last):
            began = at if began is None else began
            for out in resampler.resample(frame):
                pieces.append(out.to_ndarray().reshape(-1))
                kept += pieces[-1].size
            if kept > limit + SAMPLE_RATE:
                break
        pieces += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    except av.FFmpegError as exc:
        if not pieces:
            raise UnprocessableInput(
                f"the audio track cannot be decoded: {exc}", code="corrupt_media"
            ) from None
    samples = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    samples = samples[max(0, round((first - (began or 0.0)) * SAMPLE_RATE)) :]
    if last:
        samples = samples[: max(0, round((last - first) * SAMPLE_RATE))]
    return np.ascontiguousarray(samples[:limit], dtype=np.float32)


def _frames(
    container: av.container.InputContainer, stream: av.audio.AudioStream, last: float
) -> Iterator[tuple[av.AudioFrame, float]]:
    """The stream's frames with their start time, up to `last` (0: all)."""
    for frame in container.decode(stream):
        at = (
            float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else 0.0
        )
        if last and at >= last:
            return
        yield frame, at
