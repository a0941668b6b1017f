"""Long videos in chunks: spans with overlap, frames per chunk, one decode pass."""

from __future__ import annotations

import pytest

from deploy.core.errors import InvalidRequest
from deploy.video.chunks import chunk_spans


def test_spans_overlap_and_the_last_ends_with_the_video() -> None:
    assert chunk_spans(10.0, 4.0, 1.0) == [(0.0, 4.0), (3.0, 7.0), (6.0, 10.0)]
    assert chunk_spans(9.0, 4.0, 0.0) == [(0.0, 4.0), (4.0, 8.0), (8.0, 9.0)]
    assert chunk_spans(3.0, 4.0, 1.0) == [(0.0, 3.0)]


@pytest.mark.parametrize(("chunk_s", "overlap_s"), [(0.0, 0.0), (4.0, 4.0), (4.0, -1.0)])
def test_impossible_chunks_are_refused(chunk_s: float, overlap_s: float) -> None:
    with pytest.raises(InvalidRequest, match="chunk_s > overlap_s"):
        chunk_spans(10.0, chunk_s, overlap_s)
