"""The speech routes: OpenAI's `POST /v1/audio/transcriptions` for the audio of a video or an
audio file. Like the other route groups: a class whose methods are the handlers and whose
`routes()` is its table."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from deploy.api.transcription import parse_transcription_form, transcription_response
from deploy.api.upload import read_multipart
from deploy.config.settings import AppArgs
from deploy.core.errors import UnprocessableInput
from deploy.core.speech import Transcript
from deploy.serving.speech_stage import SpeechStage


class AudioRoutes:
    def __init__(self, speech: SpeechStage, args: AppArgs, served: str) -> None:
        self._speech = speech
        self._args = args
        self._served = served  # the speech model's name, as clients name it

    def routes(self) -> list[BaseRoute]:
        return [Route("/v1/audio/transcriptions", self.transcriptions, methods=["POST"])]

    async def transcriptions(self, request: Request) -> Response:
        received_at = time.perf_counter()
        upload = await read_multipart(
            request, self._args.extraction.max_upload_bytes, self._args.http.spool_threshold_bytes
        )
        try:
            asked = await parse_transcription_form(upload.form, self._served)
        finally:
            await upload.close()
        key = upload.digests.get("file", "")
        clip = await self._speech.audio(asked.data, "file", asked.start_s, asked.end_s, key=key)
        if clip is None:
            raise UnprocessableInput(
                f"{asked.filename} has no audio track: there is nothing to transcribe",
                param="file",
                code="no_audio",
            )
        transcript: Transcript = await self._speech.transcribe(clip, asked.language)
        extra = {
            "model": transcript.model,
            "audio_s": transcript.duration_s,
            "speech_s": transcript.speech_s,
            "timings": {
                "decode_s": round(clip.decode_s, 4),
                "transcribe_s": round(transcript.transcribe_s, 4),
                "total_s": round(time.perf_counter() - received_at, 4),
            },
        }
        return transcription_response(transcript, asked.response_format, extra)
