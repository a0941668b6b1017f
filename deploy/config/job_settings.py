"""Configuration of long-video jobs (`jobs`) and the store they live in (`store`)."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from deploy.config import env
from deploy.config.strict import StrictModel


class StoreSettings(StrictModel):
    """Where jobs, chunk results and the search index live (deploy/jobs/store.py)."""

    url: str | None = Field(
        default=None,
        description="`sqlite:///path/to/file.db` or `postgresql://user:pass@host:5432/db`; "
        "unset: an SQLite file `vidserve.db` in jobs.data_dir (one ingress replica). "
        "VIDSERVE_STORE_URL overrides (a Secret on clusters).",
    )
    connect_timeout_s: float = Field(
        default=5.0, gt=0, description="Longest a connection attempt to PostgreSQL may take."
    )

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(sqlite:///|postgres(ql)?://)", value):
            raise ValueError(
                f"store.url must start with sqlite:/// (a file) or postgresql:// (a server), "
                f"got {value.split('@')[-1]!r}"
            )
        return value


class JobsSettings(StrictModel):
    """Long-video jobs (/v1/video/jobs): chunking bounds and how much of the cluster one job
    may take."""

    data_dir: Path | None = Field(
        default=None,
        description="Where uploaded job videos (and the default SQLite file) are kept; on a "
        "cluster a volume every extractor replica mounts. Unset: VIDSERVE_CACHE_DIR/data.",
    )
    default_chunk_s: float = Field(default=30.0, gt=0, description="chunk_s when none is asked.")
    min_chunk_s: float = Field(default=2.0, gt=0, description="Shortest chunk a job may ask.")
    max_chunk_s: float = Field(
        default=600.0, gt=0, description="Longest chunk a job may ask (its frames are sampled)."
    )
    min_chunk_step_s: float = Field(
        default=1.0,
        gt=0,
        description="Least chunk_s - overlap_s a job may ask: with max_chunks it bounds a "
        "job's work (refused at POST below it).",
    )
    default_frames_per_chunk: int = Field(
        default=8, ge=1, description="Frames sampled per chunk when none are asked."
    )
    max_chunks: int = Field(
        default=2000, ge=1, description="Most chunks one job may have (3 h at 6 s chunks)."
    )
    max_chunks_in_flight: int = Field(
        default=2,
        ge=1,
        description="Chunks of one job being extracted or captioned at once: a long job takes "
        "at most this many engine slots, so interactive requests are not starved.",
    )
    max_running_jobs: int = Field(
        default=4, ge=1, description="Jobs one ingress replica runs at once; others wait queued."
    )
    chunk_attempts: int = Field(
        default=3, ge=1, description="Tries per chunk on a server-side failure (5xx, timeout)."
    )
    retry_backoff_s: float = Field(
        default=1.0, ge=0, description="Wait before a chunk's second try, doubled after each."
    )
    caption_max_tokens: int = Field(default=256, ge=1, description="Tokens of one caption.")
    summary_max_tokens: int = Field(
        default=512, ge=1, description="Tokens of one aggregation step (a merged summary)."
    )
    chunks_per_chapter: int = Field(
        default=4, ge=1, description="Consecutive chunks merged into one chapter at most."
    )
    lease_s: float = Field(
        default=30.0,
        gt=0,
        description="A running job is owned by its replica while it renews this lease; a job "
        "whose lease ran out (its replica died) is resumed by another.",
    )
    events_poll_s: float = Field(
        default=0.5, gt=0, description="How often an events stream looks for new chunk results."
    )
    max_page_size: int = Field(default=100, ge=1, description="Most jobs one list call returns.")
    max_active_jobs_per_key: int = Field(
        default=16,
        ge=1,
        description="Jobs one API key may have queued or running; one more is 429 too_many_jobs.",
    )
    max_media_bytes_per_key: int = Field(
        default=50 * 1024**3,
        ge=1,
        description="Bytes of job videos (uploads, downloads) one API key may keep on disk; past "
        "it 429 storage_quota_exceeded. DELETE of a job frees its share.",
    )
    min_free_bytes: int = Field(
        default=2 * 1024**3,
        ge=0,
        description="Free space that must stay on jobs.data_dir's disk: a new job that would "
        "go below it is 507 insufficient_storage (the database keeps its room).",
    )
    media_retention_s: float = Field(
        default=7 * 24 * 3600.0,
        ge=0,
        description="How long a finished job's video is kept (for questions about it); then "
        "it is deleted, the job, its captions and result kept.",
    )
    max_event_streams_per_key: int = Field(
        default=8,
        ge=1,
        description="Event streams (GET .../events) one key (or address, without keys) may "
        "hold open on one ingress replica; one more is 429.",
    )
    max_job_claims: int = Field(
        default=5,
        ge=1,
        description="Poison-job rule: a job claimed this many times without finishing or "
        "being handed back (its replica died or stalled running it) is failed with "
        "job_poisoned instead of being retried forever.",
    )

    @model_validator(mode="after")
    def _chunk_bounds(self) -> JobsSettings:
        if not self.min_chunk_s <= self.default_chunk_s <= self.max_chunk_s:
            raise ValueError(
                "jobs: need min_chunk_s <= default_chunk_s <= max_chunk_s, got "
                f"{self.min_chunk_s:g} <= {self.default_chunk_s:g} <= {self.max_chunk_s:g}"
            )
        return self

    def resolved_data_dir(self) -> Path:
        return self.data_dir or env.cache_dir() / "data"
