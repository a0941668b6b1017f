"""Long videos in chunks: spans with overlap, frames per chunk, one decode pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.config.settings import ExtractionSettings
from deploy.core.errors import InvalidRequest
from deploy.video.chunks import chunk_spans, extract_chunks
from tests.support.videos import decode_index, write_h264


def test_spans_overlap_and_the_last_ends_with_the_video() -> None:
    assert chunk_spans(10.0, 4.0, 1.0) == [(0.0, 4.0), (3.0, 7.0), (6.0, 10.0)]
    assert chunk_spans(9.0, 4.0, 0.0) == [(0.0, 4.0), (4.0, 8.0), (8.0, 9.0)]
    assert chunk_spans(3.0, 4.0, 1.0) == [(0.0, 3.0)]


@pytest.mark.parametrize(("chunk_s", "overlap_s"), [(0.0, 0.0), (4.0, 4.0), (4.0, -1.0)])
def test_impossible_chunks_are_refused(chunk_s: float, overlap_s: float) -> None:
    with pytest.raises(InvalidRequest, match="chunk_s > overlap_s"):
        chunk_spans(10.0, chunk_s, overlap_s)


def test_frames_per_chunk_are_exact_and_decoded_once(tmp_path: Path) -> None:
    data = write_h264(tmp_path / "v.mp4", 100, 10.0, (160, 120), gop=10).read_bytes()
    chunks = extract_chunks(
        data, chunk_s=4.0, overlap_s=1.0, frames_per_chunk=3, settings=ExtractionSettings()
    )
    assert [(c.start_s, c.end_s) for c in chunks] == [(0.0, 4.0), (3.0, 7.0), (6.0, 10.0)]
    # [start, end) for all but the last: frame 40 (4.0 s) opens the second chunk's range.
    expected = [[0, 20, 39], [30, 50, 69], [60, 80, 99]]
    assert [c.batch.indices for c in chunks] == expected
    for chunk, indices in zip(chunks, expected, strict=True):
        assert [decode_index(f) for f in chunk.batch.frames] == indices
        assert chunk.batch.timestamps_s == pytest.approx([i / 10 for i in indices])
