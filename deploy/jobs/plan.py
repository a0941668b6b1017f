"""Planning a job: the video's chunks, and the aggregation tree that merges their captions into
one summary that always fits the model's context.

Chunks: `[start, end)` spans of `chunk_s` seconds overlapping by `overlap_s` (video/chunks.py
`chunk_spans`). Captions carry absolute times.

Aggregation: captions are packed, in order, into batches whose text fits `budget` tokens; each
batch is merged into one text by the model; the merged texts are packed again, and so on until
one is left. Token counts are the engine's own (`completion_tokens` of each caption or merge),
plus a fixed allowance per line for its timestamp. The budget is what `max_model_len` leaves
after the merge's own answer and its instructions; `AppArgs` refuses settings where a batch
could not hold two texts (the tree would not shrink).

Chapters: consecutive chunks in groups of `chunks_per_chapter` (fewer when the group's text
would not fit). A chapter runs from its first chunk's start to the next chapter's start (the last
one to the video's end): chapters cover the video without gaps or overlaps, whatever the model
says. The model names each one (title and summary, structured output).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from deploy.core.errors import InvalidRequest
from deploy.core.messages import SamplingOptions
from deploy.core.tokens import LINE_TOKENS
from deploy.video.chunks import chunk_count, chunk_spans


@dataclass(frozen=True)
class Piece:
    """A timestamped text to aggregate: a caption, or a merge of several."""

    start_s: float
    end_s: float
    text: str
    tokens: int  # the engine's count of `text`'s tokens

    @property
    def cost(self) -> int:
        return self.tokens + LINE_TOKENS


def plan_chunks(
    duration_s: float, chunk_s: float, overlap_s: float, max_chunks: int
) -> list[tuple[float, float]]:
    """The job's chunk spans; a video shorter than one chunk is one chunk."""
    if duration_s <= 0:
        return [(0.0, 0.0)]
    count = chunk_count(duration_s, chunk_s, overlap_s)  # computed before any list is made
    if count > max_chunks:
        raise InvalidRequest(
            f"a {duration_s:.0f} s video in chunks of {chunk_s:g} s makes {count} chunks, "
            f"more than jobs.max_chunks ({max_chunks}): ask for a longer chunk_s",
            param="chunk_s",
            code="too_many_chunks",
        )
    return chunk_spans(duration_s, chunk_s, overlap_s)


# Sampling windows include their end; a chunk is [start, end): its window stops just before.
_END_EXCLUSIVE_S = 0.001


def chunk_sampling(span: tuple[float, float], frames: int) -> SamplingOptions:
    """The frames of one chunk: `frames` uniformly in [start, end) (the frame at `end` opens
    the next chunk)."""
    start, end = span
    return SamplingOptions(
        num_frames=frames, start_s=start, end_s=max(end - _END_EXCLUSIVE_S, start) or None
    )


def pack(pieces: Sequence[Piece], budget: int, max_items: int | None = None) -> list[list[Piece]]:
    """Consecutive pieces in batches of at most `budget` tokens (and `max_items` pieces); a
    piece alone over the budget is a batch of its own (the merge request truncates it)."""
    batches: list[list[Piece]] = []
    current: list[Piece] = []
    used = 0
    for piece in pieces:
        full = max_items is not None and len(current) >= max_items
        if current and (used + piece.cost > budget or full):
            batches.append(current)
            current, used = [], 0
        current.append(piece)
        used += piece.cost
    if current:
        batches.append(current)
    return batches


def tree_sizes(pieces: Sequence[Piece], budget: int, answer_tokens: int) -> list[int]:
    """How many merge requests each level of the aggregation makes, for pieces of these sizes
    and merged answers of at most `answer_tokens` (the worst case): the plan the job follows."""
    sizes: list[int] = []
    level = list(pieces)
    while len(level) > 1 or not sizes:
        batches = pack(level, budget)
        sizes.append(len(batches))
        level = [
            Piece(batch[0].start_s, batch[-1].end_s, "", min(answer_tokens, budget))
            for batch in batches
        ]
    return sizes


def chapter_spans(
    groups: Sequence[Sequence[Piece]], duration_s: float
) -> list[tuple[float, float]]:
    """Each chapter from its first chunk's start to the next chapter's start; the first from 0,
    the last to the video's end: no gaps."""
    starts = [0.0] + [group[0].start_s for group in groups[1:]]
    ends = [*starts[1:], max(duration_s, groups[-1][-1].end_s if groups else 0.0)]
    return list(zip(starts, ends, strict=True))


def timestamp(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def lines(pieces: Sequence[Piece]) -> str:
    """The pieces as the model reads them: one `[start-end] text` line each."""
    return "\n".join(
        f"[{timestamp(p.start_s)}-{timestamp(p.end_s)}] {p.text.strip()}" for p in pieces
    )
