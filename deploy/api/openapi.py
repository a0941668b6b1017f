"""The OpenAPI 3.1 document of the API (`GET /openapi.json`), generated from the request and
response models, never written by hand: each operation names its request model (pydantic),
its query parameters and the statuses it answers with, and the schemas come from the models.
The running app is fuzzed against it by schemathesis (tests/integration/test_openapi.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from deploy.api import schemas
from deploy.api.jobs_protocol import JobRequest
from deploy.api.openai_protocol import ChatCompletionRequest
from deploy.api.replies import AnalyzeResponse
from deploy.config.settings import AppArgs
from deploy.core.messages import Strategy
from deploy.core.speech import AudioMode
from deploy.streams.stream_spec import StreamSpec

JSON = "application/json"
MULTIPART = "multipart/form-data"
EVENTS = "text/event-stream"
REF = "#/components/schemas/{model}"


class AnalyzeForm(BaseModel):
    """The multipart fields of POST /v1/video/analyze (api/analyze_form.py checks them; a test
    keeps the two the same)."""

    model_config = ConfigDict(extra="forbid")

    file: bytes | None = Field(default=None, description="A video (MP4, MOV, MKV, WebM, AVI).")
    image: bytes | None = Field(default=None, description="An image instead of a video.")
    url: str | None = Field(default=None, description="A video or image by http(s) URL.")
    prompt: str = Field(min_length=1, description="The question.")
    num_frames: int | None = Field(default=None, ge=1)
    fps: float | None = Field(default=None, gt=0)
    start_s: float | None = Field(default=None, ge=0)
    end_s: float | None = Field(default=None, gt=0)
    strategy: Strategy | None = None
    scene_threshold: float | None = Field(default=None, gt=0, le=1)
    min_gap_s: float | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    seed: int | None = Field(default=None)
    response_format: str | None = Field(default=None, description="A JSON schema, as JSON text.")
    audio: AudioMode | None = Field(
        default=None, description="Hear the video's speech: auto (default), on, off."
    )


class TranscriptionForm(BaseModel):
    """The multipart fields of POST /v1/audio/transcriptions (api/transcription.py checks them)."""

    model_config = ConfigDict(extra="forbid")

    file: bytes = Field(description="A video or an audio file (its audio track is transcribed).")
    model: str = Field(description="The served speech model, or whisper-1 (answered by it).")
    language: str | None = Field(default=None, description="ISO-639-1 code, e.g. en.")
    prompt: str | None = Field(default=None, description="Accepted; not used.")
    response_format: Literal["json", "text", "srt", "verbose_json", "vtt"] | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)
    start_s: float | None = Field(default=None, ge=0, description="vidserve: window start.")
    end_s: float | None = Field(default=None, ge=0, description="vidserve: window end.")


class JobUpload(JobRequest):
    """POST /v1/video/jobs as multipart: the video as 'file' and the job's fields."""

    file: bytes = Field(description="The video.")
    response_format: str | None = Field(  # type: ignore[assignment]
        default=None, description="OpenAI's response_format, as JSON text."
    )


@dataclass(frozen=True)
class Param:
    name: str
    schema: dict[str, Any]
    required: bool = False
    where: str = "query"


@dataclass(frozen=True)
class Op:
    method: str
    path: str
    summary: str
    ok: int
    answers: dict[str, type[BaseModel] | None]  # content type -> model of the OK response
    errors: tuple[int, ...]
    body: dict[str, type[BaseModel]] = field(default_factory=dict)  # content type -> model
    params: tuple[Param, ...] = ()
    open: bool = False  # answered without an API key


SECONDS = r"^\d{1,7}(\.\d{1,3})?$"  # a time as api/library_routes.py reads it
_COMMON = (400, 408, 413, 429, 503)  # what the guard (api/guard.py) may answer on any body route


def _stream_operations() -> list[Op]:
    stream_id = Param("stream_id", {"type": "string"}, required=True, where="path")
    after = Param("after", {"type": "integer", "minimum": -1})
    return [
        Op("post", "/v1/streams", "Watch a live stream (RTSP, RTMP, HLS): captions by window, "
           "alert rules", 201, {JSON: None}, (*_COMMON, 422), body={JSON: StreamSpec}),
        Op("get", "/v1/streams", "The caller's streams, newest first", 200, {JSON: None},
           (400, 503)),
        Op("get", "/v1/streams/{stream_id}", "One stream: state, reconnects, windows, lag",
           200, {JSON: None}, (400, 404, 503), params=(stream_id,)),
        Op("delete", "/v1/streams/{stream_id}", "Stop a stream (its windows stay searchable)",
           200, {JSON: None}, (400, 404, 503), params=(stream_id,)),
        Op("get", "/v1/streams/{stream_id}/windows", "A stream's captioned windows", 200,
           {JSON: None}, (400, 404, 503), params=(stream_id, after)),
        Op("get", "/v1/streams/{stream_id}/alerts", "The alerts a stream's rules fired", 200,
           {JSON: None}, (400, 404, 503), params=(stream_id,)),
        Op("get", "/v1/streams/{stream_id}/events", "Server-sent events of a stream", 200,
           {EVENTS: None}, (400, 404, 429, 503), params=(stream_id, after)),
    ]  # fmt: skip


def _operations(args: AppArgs, jobs: bool, speech: bool) -> list[Op]:
    page = {"type": "integer", "minimum": 1, "maximum": args.jobs.max_page_size}
    job_id = Param("job_id", {"type": "string"}, required=True, where="path")
    ops = [
        Op("post", "/v1/video/analyze", "Ask about one video or image (multipart upload or URL)",
           200, {JSON: AnalyzeResponse}, (*_COMMON, 404, 415, 422, 504),
           body={MULTIPART: AnalyzeForm}),
        Op("post", "/v1/chat/completions", "OpenAI chat completions with video and images",
           200, {JSON: None, EVENTS: None}, (*_COMMON, 404, 415, 422, 504),
           body={JSON: ChatCompletionRequest}),
        Op("get", "/v1/models", "The served models", 200, {JSON: schemas.ModelList}, (400,)),
        Op("get", "/healthz", "Liveness: 200 while the process runs", 200,
           {JSON: schemas.Health}, (400,), open=True),
        Op("get", "/readyz", "Readiness: 200 once a backend can answer", 200,
           {JSON: schemas.Readiness}, (400, 503), open=True),
    ]  # fmt: skip
    if speech:
        ops.append(
            Op("post", "/v1/audio/transcriptions", "OpenAI audio transcriptions of a video's "
               "(or an audio file's) speech", 200, {JSON: None, "text/plain": None},
               (*_COMMON, 404, 415, 422, 504), body={MULTIPART: TranscriptionForm})
        )  # fmt: skip
    if jobs:
        ops += [
            Op("post", "/v1/video/jobs", "Start a long-video job (summary, chapters, captions)",
               202, {JSON: schemas.JobView}, (*_COMMON, 415, 422, 507),
               body={JSON: JobRequest, MULTIPART: JobUpload}),
            Op("get", "/v1/video/jobs", "The caller's jobs, newest first", 200,
               {JSON: schemas.JobList}, (400, 503),
               params=(Param("limit", page), Param("after", {"type": "string"}))),
            Op("get", "/v1/video/jobs/{job_id}", "One job: state, progress, chunks, result",
               200, {JSON: schemas.JobView}, (400, 404, 503), params=(job_id,)),
            Op("delete", "/v1/video/jobs/{job_id}",
               "Cancel an unfinished job; delete a finished one with its video", 200,
               {JSON: None}, (400, 404, 503), params=(job_id,)),
            Op("get", "/v1/video/jobs/{job_id}/events", "Server-sent events of a job", 200,
               {EVENTS: None}, (400, 404, 429, 503), params=(job_id,)),
            Op("get", "/v1/video/search", "Search all of the caller's videos, by words and by "
               "meaning", 200, {JSON: schemas.SearchResults}, (400, 503, 504),
               params=(Param("q", {"type": "string", "minLength": 1, "maxLength": 1000},
                             required=True),
                       Param("mode", {"enum": ["hybrid", "text", "semantic"]}),
                       Param("job_id", {"type": "string"}), Param("limit", page))),
            Op("get", "/v1/video/jobs/{job_id}/media", "The job's video (Range requests)",
               200, {"video/*": None}, (400, 404, 410, 416, 503), params=(job_id,)),
            Op("get", "/v1/video/jobs/{job_id}/thumbnail", "One frame of the job's video, "
               "JPEG", 200, {"image/jpeg": None}, (*_COMMON, 404, 410, 422, 504),
               params=(job_id, Param("t", {"type": "string", "pattern": SECONDS}))),
        ]  # fmt: skip
    return ops


def openapi_document(
    args: AppArgs,
    served: list[str],
    *,
    jobs: bool,
    keys: bool,
    speech: bool = False,
    streams: bool = False,
) -> dict[str, Any]:
    """The document for this app: its routes (jobs when enabled), its served model names, and
    bearer auth on every route but the open ones when API keys are on."""
    ops = _operations(args, jobs, speech) + (_stream_operations() if streams else [])
    models: set[type[BaseModel]] = {schemas.ErrorResponse, schemas.DeletedJob}
    for op in ops:
        models.update(m for m in (*op.body.values(), *op.answers.values()) if m is not None)
    ordered = sorted(models, key=lambda m: m.__name__)
    requests = {m for op in ops for m in op.body.values()}
    refs, defs = models_json_schema(
        [(m, "validation" if m in requests else "serialization") for m in ordered],
        ref_template=REF,
    )
    components: dict[str, Any] = {"schemas": defs.get("$defs", {})}
    if keys:
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        paths.setdefault(op.path, {})[op.method] = _operation(op, refs, served, keys)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "vidserve",
            "version": "1",
            "description": "Questions about videos, answered by vision-language models. Errors "
            "are {'error': {message, type, code, request_id}} (docs/errors.md).",
        },
        "paths": paths,
        "components": components,
    }


def _operation(
    op: Op, refs: dict[Any, dict[str, Any]], served: list[str], keys: bool
) -> dict[str, Any]:
    def ref(model: type[BaseModel], mode: str) -> dict[str, Any]:
        return refs[(model, mode)]

    out: dict[str, Any] = {"summary": op.summary, "operationId": _op_id(op)}
    if op.params:
        out["parameters"] = [
            {"name": p.name, "in": p.where, "required": p.required or p.where == "path",
             "schema": p.schema}
            for p in op.params
        ]  # fmt: skip
    if op.body:
        content: dict[str, Any] = {}
        for kind, model in op.body.items():
            schema = ref(model, "validation")
            if model is ChatCompletionRequest:  # the model names this app serves
                schema = {"allOf": [schema, {"properties": {"model": {"enum": served}}}]}
            content[kind] = {"schema": schema}
        out["requestBody"] = {"required": True, "content": content}
    ok_content = {
        kind: {"schema": _ok_schema(op, kind, model, ref)} for kind, model in op.answers.items()
    }
    error = {JSON: {"schema": ref(schemas.ErrorResponse, "serialization")}}
    responses: dict[str, Any] = {str(op.ok): {"description": "OK", "content": ok_content}}
    statuses = set(op.errors) | ({401} if keys and not op.open else set())
    for status in sorted(statuses):
        responses[str(status)] = {"description": _REASONS.get(status, "error"), "content": error}
    out["responses"] = responses
    if keys and not op.open:
        out["security"] = [{"bearer": []}]
    return out


def _ok_schema(
    op: Op, kind: str, model: type[BaseModel] | None, ref: Callable[..., dict[str, Any]]
) -> dict[str, Any]:
    if model is not None:
        return ref(model, "serialization")
    if op.method == "delete" and op.path.startswith("/v1/video/jobs"):  # cancelled or deleted
        job, deleted = schemas.JobView, schemas.DeletedJob
        return {"anyOf": [ref(job, "serialization"), ref(deleted, "serialization")]}
    return {"type": "object"} if kind == JSON else {"type": "string"}


def _op_id(op: Op) -> str:
    words = [w for w in op.path.replace("{", "").replace("}", "").split("/") if w]
    return "_".join([op.method, *words]).replace(".", "_")


_REASONS = {
    400: "The request is wrong; the message names the field",
    401: "No API key, or not a valid one",
    404: "No such model or job",
    408: "The body arrived too slowly",
    413: "Too large",
    415: "Not a content type this route takes",
    422: "Well-formed, but the media cannot be processed",
    429: "Past a per-key limit; Retry-After says when to retry",
    503: "Overloaded or no backend ready; Retry-After says when to retry",
    504: "The backend did not answer in time",
    507: "The jobs disk is below its free-space floor",
}
