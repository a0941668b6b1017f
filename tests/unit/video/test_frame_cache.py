"""The frame cache: keyed by content and options, bounded by bytes, least recently used out."""

from __future__ import annotations

import hashlib

import numpy as np

from deploy.core.messages import FrameBatch, MediaKind, SamplingOptions, StoredFrames, Strategy
from deploy.video.cache import FrameCache, cache_key, digest


def _batch(count: int, side: int = 10) -> StoredFrames:
    frames = np.zeros((count, side, side, 3), np.uint8)  # 300 bytes per frame
    batch = FrameBatch.of(
        frames,
        kind=MediaKind.VIDEO,
        indices=list(range(count)),
        timestamps_s=[0.0] * count,
        source_fps=1.0,
        duration_s=1.0,
        source_width=side,
        source_height=side,
        total_frames=count,
    )
    return StoredFrames.inline(batch)


def test_keys_depend_on_the_bytes_the_kind_and_the_options_not_on_names() -> None:
    options = SamplingOptions(num_frames=4)
    video = digest(b"video-bytes")
    assert video == hashlib.sha256(b"video-bytes").hexdigest()
    key = cache_key(video, options, MediaKind.VIDEO)
    assert key == cache_key(digest(b"video-bytes"), SamplingOptions(num_frames=4), MediaKind.VIDEO)
    others = {
        cache_key(digest(b"video-bytez"), options, MediaKind.VIDEO),
        cache_key(video, SamplingOptions(num_frames=5), MediaKind.VIDEO),
        cache_key(video, options, MediaKind.IMAGE),
        cache_key(video, SamplingOptions(num_frames=4, strategy=Strategy.SCENE), MediaKind.VIDEO),
    }
    assert key not in others
    assert len(others) == 4


def test_eviction_by_bytes_least_recently_used_first() -> None:
    cache = FrameCache(max_bytes=3000)  # ten 300-byte frames
    cache.put("a", _batch(4))  # 1200
    cache.put("b", _batch(4))  # 2400
    assert cache.get("a") is not None  # a is now the most recent
    cache.put("c", _batch(4))  # 3600 > 3000: b goes
    assert cache.get("b") is None
    assert cache.get("a") is not None
    assert cache.get("c") is not None
    assert cache.bytes == 2400
    assert (cache.stats.hits, cache.stats.misses, cache.stats.evictions) == (3, 1, 1)


def test_a_batch_larger_than_the_cache_is_not_kept() -> None:
    cache = FrameCache(max_bytes=1000)
    cache.put("small", _batch(2))
    cache.put("huge", _batch(5))
    assert cache.get("huge") is None
    assert cache.get("small") is not None
    assert len(cache) == 1


def test_a_zero_byte_cache_keeps_nothing() -> None:
    cache = FrameCache(max_bytes=0)
    cache.put("a", _batch(1))
    assert cache.get("a") is None
