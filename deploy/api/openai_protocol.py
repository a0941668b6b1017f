"""The OpenAI chat protocol, requests side: the request models and their parsing.

    JSON body ─► ChatCompletionRequest (strict; unknown fields are 400s)
        ─► ChatPlan: turns, the one video/image (URL, data URL or frame list), options

The routes that use it, and the responses, are in openai_routes.py.

Content parts: `text`, `image_url` and `video_url`, whose `url` is http(s) (downloaded through the
SSRF guard), `file://` (inside `url_fetch.local_dir`), `data:<video or image type>;base64,...`,
or a video as its frames, `data:video/jpeg;base64,<frame1>,<frame2>,...` (as vLLM accepts; the
frames are taken as 1 s apart). One video or image per request. Sampling options go in the
extension field `video_options` (the OpenAI SDK sends it with `extra_body=`). Errors have
OpenAI's shape and status codes, so the SDK raises its own exception types.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import pybase64
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deploy.api import json_body
from deploy.api.response_format import ResponseFormat, schema_of
from deploy.api.sampling_options import audio_mode, sampling_options
from deploy.config.settings import AppArgs
from deploy.core.errors import InvalidRequest, NotFound
from deploy.core.messages import (
    GenerationParams,
    MediaKind,
    Role,
    SamplingOptions,
    Turn,
)
from deploy.core.numbers import INT64_MAX, INT64_MIN
from deploy.core.speech import AudioMode
from deploy.serving.pipeline import MediaSource
from deploy.video.cache import digest

_MAX_STOP_SEQUENCES = 4
_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^,;]*)*),", re.IGNORECASE)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Open(BaseModel):
    """Parts of the request whose extra fields clients add freely (e.g. `detail`)."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class MediaUrl(_Open):
    url: str = Field(min_length=1)


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ImagePart(_Strict):
    type: Literal["image_url"]
    image_url: MediaUrl


class VideoPart(_Strict):
    type: Literal["video_url"]
    video_url: MediaUrl


Part = Annotated[TextPart | ImagePart | VideoPart, Field(discriminator="type")]


class Message(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[Part] | None = None
    name: str | None = None


class StreamOptions(_Strict):
    include_usage: bool = False


class ChatCompletionRequest(_Strict):
    model: str
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    # vLLM's own bound (a 64-bit integer): past it the engine fails, and that failure must not
    # be counted against the backend (it is the request's).
    seed: int | None = Field(default=None, ge=INT64_MIN, le=INT64_MAX)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None
    n: int = Field(default=1, ge=1, le=1, description="Only one choice is generated.")
    user: str | None = None
    # vidserve's extension, checked by api/sampling_options.py (as the analyze form's fields).
    video_options: dict[str, Any] | None = None


DEFAULT_LAST_S = 300.0  # video_options.last_s: a stream's last five minutes
MAX_LAST_S = 86_400


@dataclass(frozen=True)
class ChatPlan:
    model: str
    turns: tuple[Turn, ...]
    media: MediaSource | None
    sampling: SamplingOptions
    params: GenerationParams
    stream: bool
    include_usage: bool
    job_id: str | None = None  # video_options.job_id: answer from a finished job (jobs/ask.py)
    # video_options.job_ids / search: answer from several videos (jobs/library_ask.py)
    job_ids: tuple[str, ...] = ()
    search: str | None = None
    # video_options.stream_id / last_s: about the last seconds of a live stream
    stream_id: str | None = None
    last_s: float = DEFAULT_LAST_S
    audio: AudioMode = AudioMode.AUTO  # video_options.audio: hear the video's speech


# --- parsing --------------------------------------------------------------------------------


def parse_chat(body: bytes, args: AppArgs, served: list[str]) -> ChatPlan:
    """The request body -> a plan, or a 4xx naming the field. Blocking (JSON, base64)."""
    raw = json_body.loads(
        body, args.http.max_json_depth, what="the body", param=None, code="invalid_json"
    )
    try:
        request = ChatCompletionRequest.model_validate(raw)
    except ValidationError as exc:
        raise _validation_error(exc) from None
    if request.model not in served:
        raise NotFound(
            f"the model {request.model!r} is not served here; GET /v1/models lists "
            f"{', '.join(map(repr, served))}",
            param="model",
            code="model_not_found",
        )
    turns, media = _conversation(request.messages, args)
    options = dict(request.video_options or {})
    job_id = options.pop("job_id", None)
    job_ids, search = _library_question(options, args.search.max_videos)
    stream_id, last_s = _stream_question(options)
    if stream_id is not None and (job_ids or search is not None or job_id or media is not None):
        raise InvalidRequest(
            "video_options.stream_id asks about a live stream's last minutes: send it without "
            "job_id, job_ids, search, and without an image or video in the messages",
            param="video_options.stream_id",
            code="invalid_value",
        )
    if (job_ids or search is not None) and (job_id is not None or media is not None):
        raise InvalidRequest(
            "video_options.job_ids and video_options.search ask about videos already analyzed "
            "by jobs: send them without job_id and without an image or video in the messages",
            param="video_options.job_ids" if job_ids else "video_options.search",
            code="invalid_value",
        )
    audio = audio_mode(options.pop("audio", None), "video_options.audio")
    if job_id is not None and (not isinstance(job_id, str) or media is not None):
        raise InvalidRequest(
            "video_options.job_id names a job (a string) whose video the question is about; "
            "send it without an image or video in the messages",
            param="video_options.job_id",
            code="invalid_value",
        )
    return ChatPlan(
        model=request.model,
        turns=turns,
        media=media,
        job_id=job_id,
        job_ids=job_ids,
        search=search,
        stream_id=stream_id,
        last_s=last_s,
        audio=audio,
        sampling=_sampling(options, args),
        params=_generation(request, args),
        stream=request.stream,
        include_usage=bool(request.stream_options and request.stream_options.include_usage),
    )


def _stream_question(options: dict[str, Any]) -> tuple[str | None, float]:
    """(stream_id, last_s): a live stream's id, and how many of its last seconds to ask about."""
    stream_id = options.pop("stream_id", None)
    last_s = options.pop("last_s", None)
    if stream_id is not None and (not isinstance(stream_id, str) or not stream_id):
        raise InvalidRequest(
            "video_options.stream_id is a stream's id (a string, from POST /v1/streams)",
            param="video_options.stream_id",
            code="invalid_value",
        )
    if last_s is None:
        return stream_id, DEFAULT_LAST_S
    if stream_id is None:
        raise InvalidRequest(
            "video_options.last_s goes with video_options.stream_id",
            param="video_options.last_s",
            code="invalid_value",
        )
    if (
        isinstance(last_s, bool)
        or not isinstance(last_s, int | float)
        or not 1 <= last_s <= MAX_LAST_S
    ):
        raise InvalidRequest(
            f"video_options.last_s is the seconds of the stream to ask about, 1 to {MAX_LAST_S}",
            param="video_options.last_s",
            code="out_of_range",
        )
    return stream_id, float(last_s)


def _library_question(options: dict[str, Any], most: int) -> tuple[tuple[str, ...], str | None]:
    """(job_ids, search) of a question over several videos: job_ids a list of 1 to `most` job
    ids; search a query, or true for the question itself ("" then)."""
    job_ids: tuple[str, ...] = ()
    raw = options.pop("job_ids", None)
    if raw is not None:
        if (
            not isinstance(raw, list)
            or not 1 <= len(raw) <= most
            or not all(isinstance(v, str) and v for v in raw)
        ):
            raise InvalidRequest(
                f"video_options.job_ids is a list of 1 to {most} job ids (strings; "
                "search.max_videos)",
                param="video_options.job_ids",
                code="invalid_value",
            )
        job_ids = tuple(raw)
    search = options.pop("search", None)
    if search is True:
        search = ""
    elif search is False:
        search = None
    elif search is not None and (not isinstance(search, str) or not search.strip()):
        raise InvalidRequest(
            "video_options.search is the words to find the videos by, or true to find them "
            "by the question",
            param="video_options.search",
            code="invalid_value",
        )
    if job_ids and search is not None:
        raise InvalidRequest(
            "give video_options.job_ids (these videos) or video_options.search (find them), "
            "not both",
            param="video_options.search",
            code="invalid_value",
        )
    return job_ids, search.strip() if isinstance(search, str) else None


def _validation_error(exc: ValidationError) -> InvalidRequest:
    # The most specific error: for `content`, the list branch's, not "should be a string".
    errors = exc.errors()
    error = max(errors, key=lambda e: len(e["loc"]))
    where = _location(error["loc"])
    if error["type"] == "extra_forbidden":
        return InvalidRequest(
            f"unrecognized request argument {where!r}; vidserve's own options go in "
            "'video_options' (num_frames, fps, start_s, end_s, strategy, scene_threshold, "
            "min_gap_s, audio, job_id, job_ids, search)",
            param=where,
            code="unknown_parameter",
        )
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return InvalidRequest(f"{where}: {error['msg']}{more}", param=where, code="invalid_value")


def _location(loc: tuple[int | str, ...]) -> str:
    """pydantic's location as a path: ('messages', 0, 'content', 'list[...]', 1, 'video_url',
    'video_url', 'url') -> messages[0].content[1].video_url.url (union branches dropped)."""
    text = ""
    previous: int | str | None = None
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif "[" not in part and part not in ("str", previous):
            text += f".{part}" if text else part
        previous = part
    return text


def _conversation(
    messages: list[Message], args: AppArgs
) -> tuple[tuple[Turn, ...], MediaSource | None]:
    turns: list[Turn] = []
    media: MediaSource | None = None
    total_chars = 0
    for m, message in enumerate(messages):
        role = Role.SYSTEM if message.role in ("system", "developer") else Role(message.role)
        content = message.content
        parts: list[Any] = (
            []
            if content is None
            else ([TextPart(type="text", text=content)] if isinstance(content, str) else content)
        )
        texts: list[str] = []
        has_media = False
        for p, part in enumerate(parts):
            where = f"messages[{m}].content[{p}]"
            if isinstance(part, TextPart):
                texts.append(part.text)
                continue
            if role is not Role.USER:
                raise InvalidRequest(
                    f"{where}: only user messages may carry images or video",
                    param=where,
                    code="invalid_value",
                )
            if media is not None:
                raise InvalidRequest(
                    f"{where}: one video or image per request is supported and "
                    f"{media.param} already holds one; ask about each in its own request",
                    param=where,
                    code="too_many_media",
                )
            kind = MediaKind.IMAGE if isinstance(part, ImagePart) else MediaKind.VIDEO
            url = part.image_url.url if isinstance(part, ImagePart) else part.video_url.url
            media = media_source(url, kind, f"{where}.{part.type}.url", args)
            has_media = True
        text = "\n".join(texts)
        total_chars += len(text)
        turns.append(Turn(role, text, media=has_media))
    if total_chars > args.generation.max_prompt_chars:
        raise InvalidRequest(
            f"the messages hold {total_chars} characters of text; the limit is "
            f"{args.generation.max_prompt_chars} (generation.max_prompt_chars)",
            param="messages",
            code="prompt_too_long",
        )
    if turns[-1].role is not Role.USER:
        raise InvalidRequest(
            "the last message must be the user's: it is what the model answers",
            param=f"messages[{len(turns) - 1}].role",
            code="invalid_value",
        )
    return tuple(turns), media


def media_source(url: str, kind: MediaKind, param: str, args: AppArgs) -> MediaSource:
    """A URL of an image_url / video_url part: data URLs decoded here, others fetched later."""
    if url[:5].lower() != "data:":  # not url.lower(): a data URL is megabytes
        return MediaSource(param=param, kind=kind, url=url)
    match = _DATA_URL.match(url)
    if match is None or ";base64" not in match.group("params").lower():
        raise InvalidRequest(
            f"{param}: a data URL must be 'data:<type>;base64,<data>'",
            param=param,
            code="invalid_data_url",
        )
    mime = (match.group("mime") or "").lower()
    payload = url[match.end() :]
    if kind is MediaKind.VIDEO and mime in ("video/jpeg", "video/png", "image/jpeg"):
        # Counted before any frame is decoded: the commas tell how many there are.
        count = payload.count(",") + 1
        limit = min(args.extraction.max_num_frames * 16, args.extraction.max_source_frames)
        if count > limit:
            raise InvalidRequest(
                f"{param}: {count} frames is too many to send; send at most {limit} "
                f"(at most {args.extraction.max_num_frames} are used)",
                param=param,
                code="too_many_frames",
            )
        frames = [_b64(chunk, param) for chunk in payload.split(",")]
        return MediaSource(param=param, kind=kind, frames=frames)
    data = _b64(payload, param)
    return MediaSource(param=param, kind=kind, data=data, digest=digest(data))


def _b64(data: str, param: str) -> bytes:
    """Strict base64 (RFC 4648's alphabet, exact padding, no whitespace), decoded with SIMD by
    pybase64: about 25x CPython's binascii, which was most of the Ingress's CPU on a cold
    request (docs/measurements.md)."""
    try:
        return pybase64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(
            f"{param}: the data URL's payload is not valid base64",
            param=param,
            code="invalid_data_url",
        ) from None


def _sampling(options: dict[str, Any] | None, args: AppArgs) -> SamplingOptions:
    return sampling_options(options or {}, args.extraction, param_prefix="video_options.")


def _generation(request: ChatCompletionRequest, args: AppArgs) -> GenerationParams:
    generation = args.generation
    asked = request.max_completion_tokens or request.max_tokens
    name = "max_completion_tokens" if request.max_completion_tokens else "max_tokens"
    if asked is not None and asked > generation.max_tokens_limit:
        raise InvalidRequest(
            f"{name} must be at most {generation.max_tokens_limit} "
            f"(generation.max_tokens_limit), got {asked}",
            param=name,
            code="out_of_range",
        )
    stop = (request.stop,) if isinstance(request.stop, str) else tuple(request.stop or ())
    if len(stop) > _MAX_STOP_SEQUENCES or any(not s for s in stop):
        raise InvalidRequest(
            f"stop takes at most {_MAX_STOP_SEQUENCES} non-empty sequences",
            param="stop",
            code="invalid_value",
        )
    return GenerationParams(
        max_tokens=asked or generation.default_max_tokens,
        temperature=request.temperature,
        top_p=request.top_p,
        seed=request.seed,
        stop=stop,
        json_schema=schema_of(request.response_format),
    )
