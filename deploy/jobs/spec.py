"""What a job asks for, as stored with it (the API layer validates requests into this)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class JobTask(StrEnum):
    SUMMARIZE = "summarize"  # one summary of the whole video, with timestamps
    CHAPTERS = "chapters"  # [{start_s, end_s, title, summary}] covering the video, and a summary
    CAPTIONS = "captions"  # the chunks' captions alone


class JobSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    task: JobTask
    chunk_s: float = Field(gt=0)
    overlap_s: float = Field(ge=0)
    frames_per_chunk: int = Field(ge=1)
    prompt: str | None = None  # the caption request's instruction
    aggregate_prompt: str | None = None  # the merge request's instruction
    json_schema: dict[str, Any] | None = None  # structured captions (response_format)


DEFAULT_CAPTION_PROMPT = (
    "Describe what happens in this part of the video in one or two sentences: who or what is "
    "seen, what they do, any text on screen."
)
DEFAULT_MERGE_PROMPT = (
    "These are timestamped descriptions of consecutive parts of one video. Summarize them in a "
    "short paragraph that keeps the important events with their [hh:mm:ss] timestamps."
)
CHAPTER_PROMPT = (
    "These are timestamped descriptions of consecutive parts of one chapter of a video. Give the "
    "chapter a short title and a one- or two-sentence summary, as JSON."
)
CHAPTER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "summary": {"type": "string"}},
    "required": ["title", "summary"],
    "additionalProperties": False,
}
