"""The HTTP shapes the API answers with, as pydantic models: the OpenAPI document
(api/openapi.py) is generated from them and from the request models, and schemathesis checks
every response of the running app against it (tests/integration/test_openapi.py)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorObject(_Open):
    message: str
    type: str
    code: str
    param: str | None = None
    request_id: str | None = None


class ErrorResponse(BaseModel):
    """Every error: `{"error": {...}}` with the status of the error (api/error_handlers.py)."""

    error: ErrorObject


class Health(BaseModel):
    status: Literal["alive"]


class Readiness(_Open):
    status: Literal["ready", "degraded", "not_ready"]
    backends: dict[str, dict[str, Any]] = Field(
        description="Per backend: ready, and (with a key) model, reason, circuit."
    )


class ServedModel(_Open):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    backend: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ServedModel]


class JobProgress(BaseModel):
    chunks_done: int
    chunks_failed: int
    chunks_total: int | None


class JobMediaView(BaseModel):
    bytes: int = Field(description="Bytes of video kept for the job (0: none, or deleted).")
    deleted: bool = Field(description="Deleted by retention or a cancel.")


class ChunkView(BaseModel):
    index: int
    start_s: float
    end_s: float
    text: str | None
    transcript: str | None = None  # what was said in it (timed lines), with the speech track
    error: dict[str, Any] | None
    attempts: int


class JobView(BaseModel):
    id: str
    object: Literal["video.job"]
    task: str
    state: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    video: str
    created_at: float
    updated_at: float
    duration_s: float | None
    progress: JobProgress
    options: dict[str, Any]
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    media: JobMediaView
    chunks: list[ChunkView] | None = None


class DeletedJob(BaseModel):
    id: str
    object: Literal["video.job"]
    deleted: Literal[True]


class JobList(BaseModel):
    object: Literal["list"]
    data: list[JobView]
    has_more: bool
    last_id: str | None


class SearchHitView(BaseModel):
    job_id: str
    video: str
    kind: Literal["caption", "speech", "chapter"]
    start_s: float
    end_s: float
    text: str
    score: float = Field(description="hybrid: the fused score; text: BM25; semantic: cosine")
    match: Literal["text", "semantic", "both"] = Field(description="Which search found it.")
    text_rank: int | None = Field(description="Its rank in the full-text results.")
    semantic_rank: int | None = Field(description="Its rank in the vector results.")
    similarity: float | None = Field(description="Cosine similarity to the query.")


class SearchResults(BaseModel):
    object: Literal["list"]
    mode: Literal["hybrid", "text", "semantic"] = Field(description="What was searched.")
    embedding_model: str | None = Field(description="The model of the vectors searched.")
    note: str | None = Field(description="Why the search was narrower than asked, if it was.")
    data: list[SearchHitView]
