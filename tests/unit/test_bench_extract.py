"""bench/extract.py's seek measurement times what it says: after a seek each reader has decoded
exactly the frames the sequential pass is compared with (checked from the pixels)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

from deploy.video.probe import probe
from tests.support.videos import decode_index, write_h264

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import extract as bench


@pytest.mark.parametrize("reader", bench.READERS)
@pytest.mark.parametrize("threads", [1, 2])
def test_a_seek_lands_on_the_keyframe_and_decodes_the_span(
    tmp_path: Path, reader: str, threads: int
) -> None:
    path = write_h264(tmp_path / "gop30.mp4", 120, 30.0, (160, 120), gop=30)
    index = probe(str(path))
    assert index is not None
    with bench.open_decoder(path, index, reader, threads) as decoder:
        for _ in range(10):
            decoder.next()
        assert decode_index(decoder.frame()) == 9
        for key in (60, 30, 90):  # forwards and backwards
            decoder.seek_through(key)
            assert decode_index(decoder.frame()) == key + bench.SEEK_SPAN
    overhead = bench.seek_overhead(path, index, reader, threads, limit=120)
    assert math.isfinite(overhead)
