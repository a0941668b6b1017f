"""OpenAI's audio transcription API (`POST /v1/audio/transcriptions`): the form it takes, and the
five shapes of its answer (json, text, srt, vtt, verbose_json with segments)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from starlette.datastructures import FormData, UploadFile
from starlette.responses import JSONResponse, PlainTextResponse, Response

from deploy.api.analyze_form import form_number, form_text
from deploy.core.errors import InvalidRequest, NotFound
from deploy.core.speech import Transcript

Format = Literal["json", "text", "srt", "verbose_json", "vtt"]
FORMATS: tuple[Format, ...] = ("json", "text", "srt", "verbose_json", "vtt")
FIELDS = (
    "file", "model", "language", "prompt", "response_format", "temperature",
    "timestamp_granularities[]", "start_s", "end_s",
)  # fmt: skip
# What OpenAI's clients send by default: answered by the served speech model.
OPENAI_DEFAULT_MODEL = "whisper-1"


@dataclass(frozen=True)
class TranscriptionRequest:
    data: bytes
    filename: str
    model: str
    language: str | None
    response_format: Format
    start_s: float | None
    end_s: float | None


async def parse_transcription_form(form: FormData, served: str) -> TranscriptionRequest:
    unknown = sorted(set(form.keys()) - set(FIELDS))
    if unknown:
        raise InvalidRequest(
            f"unknown field(s) {', '.join(map(repr, unknown))}; valid: {', '.join(FIELDS)}",
            param=unknown[0],
            code="unknown_field",
        )
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise InvalidRequest(
            "attach the video or audio file as multipart field 'file'",
            param="file",
            code="missing_file",
        )
    model = (form_text(form, "model") or "").strip()
    if model not in (served, OPENAI_DEFAULT_MODEL):
        raise NotFound(
            f"the speech model {model!r} is not served here: use {served!r} (or "
            f"{OPENAI_DEFAULT_MODEL!r}, which it answers)",
            param="model",
            code="model_not_found",
        )
    response_format = (form_text(form, "response_format") or "json").strip()
    if response_format not in FORMATS:
        raise InvalidRequest(
            f"response_format must be one of {', '.join(FORMATS)}, got {response_format[:32]!r}",
            param="response_format",
            code="invalid_value",
        )
    language = (form_text(form, "language") or "").strip().lower() or None
    if language is not None and not (language.isalpha() and 2 <= len(language) <= 3):
        raise InvalidRequest(
            f"language must be an ISO-639-1 code such as 'en', got {language[:16]!r}",
            param="language",
            code="invalid_value",
        )
    form_number(form, "temperature", float, low=0.0, high=1.0)  # accepted: decoding is greedy
    limit = 7 * 24 * 3600.0
    data = await upload.read()
    if not data:
        raise InvalidRequest("the file is empty", param="file", code="empty_file")
    return TranscriptionRequest(
        data=data,
        filename=upload.filename or "file",
        model=served,
        language=language,
        response_format=response_format,  # type: ignore[arg-type]
        start_s=form_number(form, "start_s", float, low=0.0, high=limit),
        end_s=form_number(form, "end_s", float, low=0.0, high=limit),
    )


def transcription_response(
    transcript: Transcript, response_format: Format, extra: dict[str, Any]
) -> Response:
    """The answer in the asked shape; `extra`: vidserve's field of the JSON shapes."""
    if response_format == "text":
        return PlainTextResponse(transcript.text + "\n")
    if response_format == "srt":
        return PlainTextResponse(srt(transcript))
    if response_format == "vtt":
        return PlainTextResponse(vtt(transcript), media_type="text/vtt")
    if response_format == "json":
        return JSONResponse({"text": transcript.text, "vidserve": extra})
    return JSONResponse(
        {
            "task": "transcribe",
            "language": transcript.language,
            "duration": transcript.duration_s,
            "text": transcript.text,
            "segments": [
                {"id": i, "start": s.start_s, "end": s.end_s, "text": s.text}
                for i, s in enumerate(transcript.segments)
            ],
            "vidserve": extra,
        }
    )


def _timestamp(seconds: float, decimal: str) -> str:
    millis = max(0, math.floor(seconds * 1000 + 0.5))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{millis:03d}"


def srt(transcript: Transcript) -> str:
    blocks = [
        f"{i}\n{_timestamp(s.start_s, ',')} --> {_timestamp(s.end_s, ',')}\n{s.text}\n"
        for i, s in enumerate(transcript.segments, 1)
    ]
    return "\n".join(blocks)


def vtt(transcript: Transcript) -> str:
    cues = [
        f"{_timestamp(s.start_s, '.')} --> {_timestamp(s.end_s, '.')}\n{s.text}\n"
        for s in transcript.segments
    ]
    return "WEBVTT\n\n" + "\n".join(cues)
