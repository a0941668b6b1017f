"""What the speech track carries between deployments: a clip of audio (16 kHz mono float32, in
Ray's object store like frames), and what was said in it (`Transcript`: timed segments)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ray import ObjectRef

SAMPLE_RATE = 16_000  # what Whisper models take
# FrameExtractor.extract_audio_kept's answer when the upload's bytes are not on that replica.
AUDIO_NOT_KEPT = "not_kept"


class AudioMode(StrEnum):
    """Whether a question hears the video's speech: `auto` when the service can (a Transcriber,
    an audio track), `on` (an error when it cannot), `off`."""

    AUTO = "auto"
    ON = "on"
    OFF = "off"


@dataclass(frozen=True)
class AudioClip:
    """Audio of `[start_s, start_s + duration_s)` of a source, resampled to 16 kHz mono float32.
    `samples` is an ObjectRef (the extractor put it in the object store) or the array itself."""

    samples: ObjectRef[np.ndarray] | np.ndarray
    start_s: float
    duration_s: float
    source_duration_s: float  # of the whole source's audio track
    decode_s: float = 0.0

    async def array(self) -> np.ndarray:
        if isinstance(self.samples, np.ndarray):
            return self.samples
        samples: np.ndarray = await self.samples
        return samples


@dataclass(frozen=True)
class SpeechSegment:
    """What was said from `start_s` to `end_s` (seconds of the source, not of the clip)."""

    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True)
class Transcript:
    segments: tuple[SpeechSegment, ...]
    language: str
    model: str
    duration_s: float  # seconds of audio transcribed
    speech_s: float  # of which voice activity detection kept as speech
    transcribe_s: float = 0.0

    @property
    def text(self) -> str:
        return " ".join(segment.text for segment in self.segments).strip()

    def lines(self) -> list[str]:
        """The segments as prompt lines: `[00:12-00:15] what was said`."""
        return [f"[{clock(s.start_s)}-{clock(s.end_s)}] {s.text}" for s in self.segments if s.text]


def clock(seconds: float) -> str:
    """`mm:ss` (`h:mm:ss` past an hour)."""
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


@dataclass(frozen=True)
class Heard:
    """What a question heard: the transcript of its window, or why there is none (`note`)."""

    transcript: Transcript | None = None
    note: str | None = None
    decode_s: float = 0.0

    def prompt(self, question: str, max_chars: int) -> str:
        """`question` with the transcript before it (cut to `max_chars`), when there is one."""
        lines = self.transcript.lines() if self.transcript else []
        if not lines:
            return question
        text, kept = "", 0
        for line in lines:
            if len(text) + len(line) + 1 > max_chars:
                break
            text, kept = text + line + "\n", kept + 1
        cut = "" if kept == len(lines) else f"(the first {kept} of {len(lines)} lines)\n"
        return f"Speech in the video, with its times:\n{text}{cut}\n{question}"
