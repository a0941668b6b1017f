"""From chunk captions to a job's result: hierarchical summaries and chapters (the plan is
deploy/jobs/plan.py; the model calls go through `JobWork`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from deploy.core.tokens import merge_budget
from deploy.jobs.plan import Piece, chapter_spans, lines, pack
from deploy.jobs.spec import (
    CHAPTER_PROMPT,
    CHAPTER_SCHEMA,
    DEFAULT_MERGE_PROMPT,
    JobSpec,
)
from deploy.jobs.work import JobWork


@dataclass(frozen=True)
class Chapter:
    start_s: float
    end_s: float
    title: str
    summary: str
    tokens: int  # the engine's count of the title and summary it wrote

    def as_dict(self) -> dict[str, Any]:
        return {"start_s": self.start_s, "end_s": self.end_s, "title": self.title,
                "summary": self.summary}  # fmt: skip

    def as_piece(self) -> Piece:
        return Piece(self.start_s, self.end_s, f"{self.title}: {self.summary}", self.tokens)


@dataclass(frozen=True)
class Aggregator:
    work: JobWork
    max_model_len: int
    answer_tokens: int  # jobs.summary_max_tokens
    chunks_per_chapter: int
    concurrency: int  # merge requests of one job at once

    @property
    def budget(self) -> int:
        return merge_budget(self.max_model_len, self.answer_tokens)

    async def summary(self, pieces: Sequence[Piece], spec: JobSpec) -> tuple[str, int]:
        """One summary of `pieces`, merged level by level until one text is left; the text and
        the number of levels."""
        level = list(pieces)
        levels = 0
        while len(level) > 1 or levels == 0:
            batches = pack(level, self.budget)
            level = await self._gather([self._merge(batch, spec) for batch in batches])
            levels += 1
        return level[0].text, levels

    async def chapters(self, pieces: Sequence[Piece], duration_s: float) -> list[Chapter]:
        """Chapters of consecutive captions, covering [0, duration] without gaps."""
        groups = pack(pieces, self.budget, max_items=self.chunks_per_chapter)
        named = await self._gather([self._name(group) for group in groups])
        return [
            Chapter(start, end, *name)
            for (start, end), name in zip(chapter_spans(groups, duration_s), named, strict=True)
        ]

    async def _merge(self, batch: Sequence[Piece], spec: JobSpec) -> Piece:
        instruction = spec.aggregate_prompt or DEFAULT_MERGE_PROMPT
        generated = await self.work.generate(f"{instruction}\n\n{lines(batch)}", self.answer_tokens)
        return Piece(batch[0].start_s, batch[-1].end_s, generated.text, generated.tokens)

    async def _name(self, group: Sequence[Piece]) -> tuple[str, str, int]:
        generated = await self.work.generate(
            f"{CHAPTER_PROMPT}\n\n{lines(group)}", self.answer_tokens, CHAPTER_SCHEMA
        )
        return (*parse_chapter(generated.text), generated.tokens)

    async def _gather(self, calls: Sequence[Any]) -> list[Any]:
        """Run `calls` at most `concurrency` at a time, results in order."""
        gate = asyncio.Semaphore(self.concurrency)

        async def one(call: Any) -> Any:
            async with gate:
                return await call

        return list(await asyncio.gather(*(one(call) for call in calls)))


def parse_chapter(text: str) -> tuple[str, str]:
    """(title, summary) from the model's JSON; its text as both when it is not JSON (a model
    without structured output, or an answer cut by max_tokens)."""
    try:
        value = json.loads(text)
        return str(value["title"]).strip(), str(value["summary"]).strip()
    except (ValueError, KeyError, TypeError):
        words = text.split()
        return " ".join(words[:8]), text.strip()
