"""The speech stage: the extractor demuxes a source's audio (16 kHz mono, into Ray's object
store), the Transcriber says what was said in it. No HTTP here.

`hear` is a question's speech track: the transcript of the window its frames are sampled from,
or why there is none (a note: no audio track, silence, the Transcriber down). With `audio: auto`
a question is answered from its frames alone when its speech cannot be heard; with `on` that is
an error."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from ray.serve.handle import DeploymentHandle

from deploy.config.speech_settings import SpeechSettings
from deploy.core.errors import InvalidRequest, VidserveError
from deploy.core.messages import MediaKind, SamplingOptions
from deploy.core.speech import AUDIO_NOT_KEPT, AudioClip, AudioMode, Heard, Transcript
from deploy.serving.affinity_router import affinity, url_key
from deploy.serving.handles import call_stage
from deploy.serving.metrics import StageMetrics
from deploy.video.cache import digest

if TYPE_CHECKING:
    from deploy.serving.pipeline import MediaSource

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
        data: bytes | None,
        param: str,
        start_s: float | None = None,
        end_s: float | None = None,
        *,
        file: str | None = None,
        url: str | None = None,
        key: str = "",
        content_digest: str | None = None,
    ) -> AudioClip | None:
        """The audio track of `data` (or of a job's `file`; a window of it), or None when it
        has none. `key`: the media's affinity key (serving/affinity_router.py), so the call goes
        where its frames go; Serve's router holds an unkeyed call back behind keyed ones of the
        same deployment (measured: 10 s per keyed call, the unkeyed one never assigned).
        `content_digest`: an upload's, whose bytes the extractor keeps after its frames."""
        if start_s is not None and end_s is not None and end_s <= start_s:
            raise InvalidRequest(
                f"end_s ({end_s:g}) must be after start_s ({start_s:g})", param="end_s"
            )
        limit = self._settings.max_audio_s
        extractor = affinity(self._extractor, key)
        found: AudioClip | str | None = AUDIO_NOT_KEPT
        if file is None and url is None and content_digest:
            # The replica that just decoded its frames kept the bytes: no video sent twice.
            call = extractor.extract_audio_kept.remote(content_digest, limit, param, start_s, end_s)
            found = await call_stage(call, stage="extract", timeout_s=EXTRACT_AUDIO_TIMEOUT_S)
        if found == AUDIO_NOT_KEPT:
            if file is not None:
                call = extractor.extract_audio_file.remote(file, limit, param, start_s, end_s)
            elif url is not None:
                call = extractor.extract_audio_url.remote(url, limit, param, start_s, end_s)
            else:
                call = extractor.extract_audio.remote(data, limit, param, start_s, end_s)
            found = await call_stage(call, stage="extract", timeout_s=EXTRACT_AUDIO_TIMEOUT_S)
        clip = found if isinstance(found, AudioClip) else None
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

    async def hear(
        self,
        source: MediaSource,
        sampling: SamplingOptions,
        mode: AudioMode,
        has_audio: bool | None = None,
    ) -> Heard:
        """The speech of the window `sampling` asks for, or why there is none. `has_audio`:
        what the extractor saw in the header when it read the frames (False: nothing is asked)."""
        if mode is AudioMode.OFF or source.kind is MediaKind.IMAGE or source.frames is not None:
            return Heard(note=None if mode is not AudioMode.ON else "images have no sound")
        if source.data is None and source.file is None and source.url is None:
            return self._cannot(mode, "the request has no video to hear")
        if has_audio is False:
            return self._cannot(mode, "the video has no audio track")
        try:
            key = source.digest or ""
            if source.url is not None:
                key = url_key(source.url)  # where its frames went: its download is kept there
            elif source.data is not None and not key:
                key = await asyncio.to_thread(digest, source.data)
            clip = await self.audio(
                source.data,
                source.param,
                sampling.start_s,
                sampling.end_s,
                file=source.file,
                url=source.url,
                key=key,
                content_digest=key if source.data is not None else None,
            )
            if clip is None:
                return self._cannot(mode, "the video has no audio track")
            transcript = await self.transcribe(clip)
        except VidserveError as exc:
            if mode is AudioMode.ON or exc.status_code < 500:
                raise
            return Heard(note=f"the speech could not be heard: {exc.message}")
        note = None if transcript.segments else "no speech was heard in the video"
        return Heard(transcript, note, clip.decode_s)

    @staticmethod
    def _cannot(mode: AudioMode, why: str) -> Heard:
        if mode is AudioMode.ON:
            raise InvalidRequest(f"audio is 'on' but {why}", param="audio", code="no_audio")
        return Heard(note=why)

    async def ready(self, timeout_s: float) -> str:
        name: str = await call_stage(
            self._transcriber.ready.remote(timeout_s), stage="asr", timeout_s=timeout_s + 1.0
        )
        return name

    def _observe(self, stage: str, seconds: float) -> None:
        if self._metrics is not None:
            self._metrics.stage(stage, seconds)
