"""What the jobs database keeps, as Python values: a job, a chunk's result, a search hit; and
the two ways the database fails (unreachable now: 503; unusable at start-up)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from deploy.core.errors import ServiceUnavailable
from deploy.core.jobs import JobState

UNFINISHED = (JobState.QUEUED.value, JobState.RUNNING.value)
Span = tuple[float, float]  # [start_s, end_s) of video


@dataclass
class JobRecord:
    id: str
    owner: str  # a fingerprint of the API key that created it ("" when keys are off)
    task: str
    state: JobState
    video: str  # what the user sent: the file name or the URL
    source: str  # the local path the extractor reads
    spec: dict[str, Any]  # the validated job request (api/jobs_protocol.py JobSpec)
    created_at: float
    updated_at: float
    duration_s: float | None = None
    chunks_total: int | None = None
    chunks_done: int = 0
    chunks_failed: int = 0
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    media_bytes: int = 0  # bytes of `source` that are the service's to delete (0: none)
    claims: int = 0  # times claimed without finishing or being handed back
    media_removed_at: float | None = None  # when its video was deleted (retention, cancel)


@dataclass(frozen=True)
class ChunkRecord:
    job_id: str
    index: int
    start_s: float
    end_s: float
    text: str | None  # the caption; None when the chunk failed
    error: dict[str, Any] | None = None  # {"code", "message"} of the last try
    attempts: int = 1
    tokens: int = 0  # the caption's length in the engine's tokens (aggregation plans with it)
    finished_at: float = field(default_factory=time.time)
    transcript: str | None = None  # what was said in the chunk: timed lines (the speech track)

    @property
    def ok(self) -> bool:
        return self.text is not None


@dataclass(frozen=True)
class SearchHit:
    job_id: str
    video: str
    kind: str  # "caption", "speech" (what was said) or "chapter"
    start_s: float
    end_s: float
    text: str
    score: float
    coverage: float = 1.0  # full-text: the share of the query's words the text contains


class StoreUnavailable(ServiceUnavailable):
    code_default = "store_unavailable"


class StoreError(RuntimeError):
    """The database cannot be used at start-up (the message says which and what to do)."""
