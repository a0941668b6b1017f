"""The speech stage: the extractor demuxes a source's audio (16 kHz mono, into Ray's object
store), the Transcriber says what was said in it. No HTTP here."""

from __future__ import annotations

import time
from typing import Any

from ray.serve.handle import DeploymentHandle

from deploy.config.speech_settings import SpeechSettings
from deploy.core.errors import InvalidRequest
from deploy.core.speech import AudioClip, Transcript
from deploy.serving.handles import call_stage
from deploy.serving.metrics import StageMetrics

EXTRACT_AUDIO_TIMEOUT_S = 120.0


class SpeechStage:
    def __init__(
        self,
        extractor: DeploymentHandle[Any],
        transcriber: DeploymentHandle[Any],
        settings: SpeechSettings,
        metrics: StageMetrics | None = None,
    ) -> None:
        self._extractor = extractor
        self._transcriber = transcriber
        self._settings = settings
        self._metrics = metrics

    async def audio(
        self,
        data: bytes,
        param: str,
        start_s: float | None = None,
        end_s: float | None = None,
    ) -> AudioClip | None:
        """The audio track of `data` (a window of it), or None when it has none."""
        if start_s is not None and end_s is not None and end_s <= start_s:
            raise InvalidRequest(
                f"end_s ({end_s:g}) must be after start_s ({start_s:g})", param="end_s"
            )
        call = self._extractor.extract_audio.remote(
            data, self._settings.max_audio_s, param, start_s, end_s
        )
        clip: AudioClip | None = await call_stage(
            call, stage="extract", timeout_s=EXTRACT_AUDIO_TIMEOUT_S
        )
        if clip is not None:
            self._observe("extract_audio", clip.decode_s)
        return clip

    async def transcribe(self, clip: AudioClip, language: str | None = None) -> Transcript:
        started = time.perf_counter()
        call = self._transcriber.transcribe.remote(clip, language)
        # The transcriber's own bound, and a margin for the queue in front of it.
        timeout = self._settings.request_timeout_s + 30.0
        transcript: Transcript = await call_stage(call, stage="asr", timeout_s=timeout)
        self._observe("transcribe", time.perf_counter() - started)
        return transcript

    async def ready(self, timeout_s: float) -> str:
        name: str = await call_stage(
            self._transcriber.ready.remote(timeout_s), stage="asr", timeout_s=timeout_s + 1.0
        )
        return name

    def _observe(self, stage: str, seconds: float) -> None:
        if self._metrics is not None:
            self._metrics.stage(stage, seconds)
