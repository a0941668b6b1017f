"""The jobs API's request and response shapes: a job request (form fields or JSON) validated
into a `JobSpec` (400 naming the field), and jobs, chunks and search hits as JSON."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request

from deploy.api import json_body
from deploy.api.response_format import ResponseFormat, schema_of
from deploy.config.settings import AppArgs
from deploy.core.errors import InvalidRequest
from deploy.jobs.records import ChunkRecord, JobRecord, SearchHit
from deploy.jobs.spec import JobSpec, JobTask


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: JobTask = Field(description="summarize, chapters or captions")
    url: str | None = Field(default=None, description="http(s) URL, or file:// in local_dir")
    chunk_s: float | None = Field(default=None, gt=0, description="Seconds per chunk.")
    overlap_s: float = Field(default=0.0, ge=0, description="Seconds chunks share.")
    frames_per_chunk: int | None = Field(default=None, ge=1, description="Frames per chunk.")
    prompt: str | None = Field(default=None, min_length=1, description="Caption instruction.")
    aggregate_prompt: str | None = Field(
        default=None, min_length=1, description="Instruction of each merge (summary) step."
    )
    response_format: ResponseFormat | None = Field(
        default=None, description="Structured captions: OpenAI's response_format."
    )


def parse_job_request(raw: dict[str, Any], args: AppArgs) -> tuple[JobSpec, str | None]:
    """The spec and the URL (None: an upload), or a 400 naming the field."""
    if isinstance(raw.get("response_format"), str):  # a form field carries it as JSON text
        parsed = json_body.loads(
            raw["response_format"],
            args.http.max_json_depth,
            what="response_format",
            param="response_format",
            code="invalid_value",
        )
        raw = {**raw, "response_format": parsed}
    try:
        request = JobRequest.model_validate(raw)
    except ValidationError as exc:
        raise _invalid(exc) from None
    jobs, limits = args.jobs, args.generation
    chunk_s = request.chunk_s or jobs.default_chunk_s
    if not jobs.min_chunk_s <= chunk_s <= jobs.max_chunk_s:
        raise InvalidRequest(
            f"chunk_s must be between {jobs.min_chunk_s:g} and {jobs.max_chunk_s:g} seconds "
            f"(jobs.min_chunk_s, jobs.max_chunk_s), got {chunk_s:g}",
            param="chunk_s",
            code="out_of_range",
        )
    if request.overlap_s >= chunk_s:
        raise InvalidRequest(
            f"overlap_s ({request.overlap_s:g}) must be shorter than chunk_s ({chunk_s:g})",
            param="overlap_s",
            code="out_of_range",
        )
    if chunk_s - request.overlap_s < jobs.min_chunk_step_s:
        raise InvalidRequest(
            f"chunk_s - overlap_s is {chunk_s - request.overlap_s:.3g} s; each chunk must start "
            f"at least {jobs.min_chunk_step_s:g} s after the one before "
            "(jobs.min_chunk_step_s): lower overlap_s",
            param="overlap_s",
            code="out_of_range",
        )
    frames = request.frames_per_chunk or jobs.default_frames_per_chunk
    if frames > args.extraction.max_num_frames:
        raise InvalidRequest(
            f"frames_per_chunk is at most {args.extraction.max_num_frames} "
            f"(extraction.max_num_frames), got {frames}",
            param="frames_per_chunk",
            code="out_of_range",
        )
    for name in ("prompt", "aggregate_prompt"):
        text = getattr(request, name)
        if text is not None and len(text) > limits.max_prompt_chars:
            raise InvalidRequest(
                f"{name} is longer than {limits.max_prompt_chars} characters "
                "(generation.max_prompt_chars)",
                param=name,
                code="prompt_too_long",
            )
    spec = JobSpec(
        task=request.task,
        chunk_s=chunk_s,
        overlap_s=request.overlap_s,
        frames_per_chunk=frames,
        prompt=request.prompt,
        aggregate_prompt=request.aggregate_prompt,
        json_schema=schema_of(request.response_format),
    )
    return spec, request.url


def _invalid(exc: ValidationError) -> InvalidRequest:
    where = ".".join(str(part) for part in exc.errors()[0]["loc"])
    if where == "task":
        tasks = ", ".join(task.value for task in JobTask)
        return InvalidRequest(f"task must be one of {tasks}", param="task", code="invalid_value")
    fields = ", ".join(JobRequest.model_fields)
    return json_body.invalid(exc, f"a job takes {fields} (and the upload as 'file')")


def owner_of(request: Request) -> str:
    """The fingerprint of the caller's API key (api/auth.py), "" when keys are off."""
    return str(getattr(request.state, "owner", ""))


def job_view(job: JobRecord, chunks: list[ChunkRecord] | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": job.id,
        "object": "video.job",
        "task": job.task,
        "state": job.state.value,
        "video": job.video,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "duration_s": job.duration_s,
        "progress": {
            "chunks_done": job.chunks_done,
            "chunks_failed": job.chunks_failed,
            "chunks_total": job.chunks_total,
        },
        "options": {k: v for k, v in job.spec.items() if k != "task" and v is not None},
        "result": job.result,
        "error": job.error,
        # The video kept for the job (uploads and downloads; a file:// job's is the user's).
        "media": {"bytes": job.media_bytes, "deleted": job.media_removed_at is not None},
    }
    if chunks is not None:
        view["chunks"] = [chunk_view(chunk) for chunk in chunks]
    return view


def chunk_view(chunk: ChunkRecord) -> dict[str, Any]:
    return {
        "index": chunk.index,
        "start_s": chunk.start_s,
        "end_s": chunk.end_s,
        "text": chunk.text,
        "transcript": chunk.transcript,
        "error": chunk.error,
        "attempts": chunk.attempts,
    }


def hit_view(hit: SearchHit) -> dict[str, Any]:
    return {
        "job_id": hit.job_id,
        "video": hit.video,
        "kind": hit.kind,
        "start_s": hit.start_s,
        "end_s": hit.end_s,
        "text": hit.text,
        "score": hit.score,
    }
