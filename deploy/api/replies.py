"""What a client gets back, built from the pipeline's `Answered` (serving/pipeline.py): the
analyze reply (`AnalyzeResponse`), an OpenAI chat completion and the pieces of its stream, and
vidserve's `vidserve` extension of them (who answered, what was seen, the timings). HTTP shapes
live here; the pipeline knows none of them.
"""

from __future__ import annotations

from typing import Any, Literal

from openai.types import CompletionUsage
from openai.types.chat import ChatCompletion, ChatCompletionMessage
from openai.types.chat.chat_completion import Choice
from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
from openai.types.chat.chat_completion_chunk import ChoiceDelta
from pydantic import BaseModel

from deploy.core.messages import FallbackInfo
from deploy.core.speech import Heard
from deploy.serving.pipeline import Answered, Loaded


class FramesInfo(BaseModel):
    count: int
    timestamps: list[float]
    cached: bool = False


class Timings(BaseModel):
    download_s: float = 0.0
    extract_s: float
    inference_s: float
    total_s: float


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int


class SpeechLine(BaseModel):
    start: float
    end: float
    text: str


class SpeechInfo(BaseModel):
    """What the answer heard: the transcript of its window (the lines it was given), or why
    there is none (`note`)."""

    segments: list[SpeechLine] = []
    language: str | None = None
    model: str | None = None
    note: str | None = None
    transcribe_s: float = 0.0


class AnalyzeResponse(BaseModel):
    answer: str
    model: str
    backend: str
    fallback: FallbackInfo | None = None
    frames: FramesInfo
    speech: SpeechInfo | None = None
    timings: Timings
    usage: Usage


def speech_info(heard: Heard | None) -> SpeechInfo | None:
    if heard is None or (heard.transcript is None and heard.note is None):
        return None
    transcript = heard.transcript
    if transcript is None:
        return SpeechInfo(note=heard.note)
    return SpeechInfo(
        segments=[
            SpeechLine(start=s.start_s, end=s.end_s, text=s.text) for s in transcript.segments
        ],
        language=transcript.language,
        model=transcript.model,
        note=heard.note,
        transcribe_s=round(transcript.transcribe_s, 4),
    )


def analyze_reply(answered: Answered, received_at: float) -> AnalyzeResponse:
    """POST /v1/video/analyze's reply; `received_at` (perf_counter): when the request arrived
    (total_s counts the upload)."""
    result, loaded = answered.result, answered.loaded
    assert loaded is not None  # analyze always carries media
    meta = loaded.media.meta
    return AnalyzeResponse(
        answer=result.text,
        model=result.model,
        backend=result.backend,
        fallback=answered.fallback,
        frames=FramesInfo(count=meta.count, timestamps=meta.timestamps_s, cached=meta.cached),
        speech=speech_info(answered.heard),
        timings=Timings(
            download_s=round(loaded.media.download_s, 4),
            extract_s=round(loaded.extract_s, 4),
            inference_s=round(answered.inference_s, 4),
            total_s=round(answered.finished_at - received_at, 4),
        ),
        usage=Usage(prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens),
    )


def chat_completion(
    answered: Answered, completion_id: str, created: int, received_at: float
) -> dict[str, Any]:
    """A `chat.completion` object with vidserve's extension (timings included)."""
    result = answered.result
    completion = ChatCompletion(
        id=completion_id,
        object="chat.completion",
        created=created,
        model=result.model,
        choices=[
            Choice(
                index=0,
                message=ChatCompletionMessage(role="assistant", content=result.text),
                finish_reason=finish_reason_of(result.finish_reason),
                logprobs=None,
            )
        ],
        usage=usage_of(result.prompt_tokens, result.completion_tokens),
    )
    timings = {
        "inference_s": round(answered.inference_s, 4),
        "engine_s": round(result.inference_s, 4),
        "total_s": round(answered.finished_at - received_at, 4),
    }
    extra = extension(result.backend, answered.fallback, answered.loaded, answered.heard)
    extra |= {"timings": timings}
    return as_json(completion) | {"vidserve": extra}


def as_json(model: BaseModel) -> dict[str, Any]:
    """What was set, as JSON (the types' many optional fields stay out unless set)."""
    return model.model_dump(mode="json", exclude_unset=True)


def chunk_choice(delta: ChoiceDelta, finish_reason: FinishReason | None = None) -> ChunkChoice:
    return ChunkChoice(index=0, delta=delta, finish_reason=finish_reason, logprobs=None)


def usage_of(prompt_tokens: int, completion_tokens: int) -> CompletionUsage:
    return CompletionUsage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
    )


FinishReason = Literal["stop", "length"]


def finish_reason_of(reason: str | None) -> FinishReason:
    """OpenAI's values: `length` when max_tokens cut the answer, else `stop`."""
    return "length" if reason == "length" else "stop"


def extension(
    backend: str,
    fallback: FallbackInfo | None,
    loaded: Loaded | None,
    heard: Heard | None = None,
) -> dict[str, Any]:
    """vidserve's extra response field: who answered, and what was seen and heard."""
    extra: dict[str, Any] = {
        "backend": backend,
        "fallback": fallback.model_dump() if fallback else None,
    }
    if loaded is not None:
        meta = loaded.media.meta
        extra["frames"] = {
            "count": meta.count,
            "timestamps": meta.timestamps_s,
            "cached": meta.cached,
            "decode_s": round(meta.extract_s, 4),
            "download_s": round(loaded.media.download_s, 4),
            "extract_s": round(loaded.extract_s, 4),
        }
    if (speech := speech_info(heard)) is not None:
        extra["speech"] = speech.model_dump()
    return extra
