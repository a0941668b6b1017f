"""Long videos in chunks: the [start, end) time ranges of a given length and overlap, computed
(never counted in a loop). A job's chunks are extracted one by one by the FrameExtractor
(`extract_file`, deploy/jobs/work.py)."""

from __future__ import annotations

import math

from deploy.core.errors import InvalidRequest


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
