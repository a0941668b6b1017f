"""Long videos in chunks: time ranges of a given length and overlap, frames per chunk, decoded
in one pass (one index, one read plan for all chunks). The building block for summarising
long videos chunk by chunk."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from deploy.config.settings import ExtractionSettings
from deploy.core.errors import InvalidRequest, UnprocessableInput
from deploy.core.messages import FrameBatch
from deploy.video import decode
from deploy.video.probe import probe
from deploy.video.sampling import uniform_indices, window


@dataclass(frozen=True)
class Chunk:
    start_s: float
    end_s: float
    batch: FrameBatch  # this chunk's frames, indices and timestamps


def chunk_count(duration_s: float, chunk_s: float, overlap_s: float) -> int:
    """How many chunks `chunk_spans` makes, computed, not counted: the fewest n with
    (n - 1) * step + chunk_s >= duration_s (step = chunk_s - overlap_s)."""
    if chunk_s <= 0 or overlap_s < 0 or overlap_s >= chunk_s:
        raise InvalidRequest(
            f"chunks need chunk_s > overlap_s >= 0, got chunk_s={chunk_s:g}, "
            f"overlap_s={overlap_s:g}",
            param="chunk_s",
            code="out_of_range",
        )
    if duration_s <= chunk_s:
        return 1
    # The 1e-9 keeps a float just over a whole number of steps from adding an empty chunk.
    return math.ceil((duration_s - chunk_s) / (chunk_s - overlap_s) - 1e-9) + 1


def chunk_spans(duration_s: float, chunk_s: float, overlap_s: float) -> list[tuple[float, float]]:
    """[start, end) ranges of `chunk_s` seconds, the i-th starting at i * (chunk_s - overlap_s);
    the last one ends with the video. Callers bound `chunk_count` first (jobs/plan.py)."""
    step = chunk_s - overlap_s
    count = chunk_count(duration_s, chunk_s, overlap_s)
    return [
        (round(i * step, 6), round(min(i * step + chunk_s, duration_s), 6)) for i in range(count)
    ]


def extract_chunks(
    data: bytes,
    *,
    chunk_s: float,
    overlap_s: float,
    frames_per_chunk: int,
    settings: ExtractionSettings,
) -> list[Chunk]:
    with decode._as_file(data) as path:
        index = probe(path, settings)
        if index is None:
            raise UnprocessableInput(
                "this video has no frame index, so it cannot be split in chunks",
                code="corrupt_media",
            )
        fps = index.fps
        spans = chunk_spans(index.duration_s, chunk_s, overlap_s)
        per_chunk: list[list[int]] = []
        for start, end in spans:
            span = window(index.frame_count, fps, start, end, index.times_s)
            if end < index.duration_s:  # [start, end): the frame at `end` opens the next chunk
                stamps = index.times_s[span.start : span.stop]
                span = range(
                    span.start, span.start + sum(t - index.times_s[0] < end for t in stamps)
                )
            per_chunk.append([span.start + i for i in uniform_indices(len(span), frames_per_chunk)])
        wanted = sorted({i for chunk in per_chunk for i in chunk})
        whole = decode.read_frames(
            path, wanted, index, fps, settings, budget_frames=frames_per_chunk
        )
    row = {frame: position for position, frame in enumerate(whole.indices)}
    chunks = []
    for (start, end), indices in zip(spans, per_chunk, strict=True):
        rows = [row[i] for i in indices]
        batch = replace(
            whole,
            frames=np.ascontiguousarray(whole.frames[rows]),
            indices=indices,
            timestamps_s=[whole.timestamps_s[r] for r in rows],
        )
        chunks.append(Chunk(start, end, batch))
    return chunks
