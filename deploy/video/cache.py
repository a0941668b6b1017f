"""A bounded cache of extracted frames, so a second question about the same video skips
decoding and ships no video.

Keyed by the video's content digest (SHA-256 of the bytes, not the name or URL: `digest`), its
kind and the sampling options; bounded by the bytes of the frames it holds, least recently used
evicted first. It holds `StoredFrames`, whose pixels live in Ray's object store: a hit hands out
the same object reference again, with no copy. One per extractor replica; the affinity router
(deploy/serving/affinity_router.py) sends every request about one video to the same replica.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

from deploy.core.messages import MediaKind, SamplingOptions, StoredFrames


def digest(data: bytes) -> str:
    """The content digest of a video or image: SHA-256 (collision-resistant, so one client
    cannot craft bytes that read another's frames; hardware-accelerated where CPUs have SHA
    extensions, about 1.2 GB/s on the 2-core test machine)."""
    return hashlib.sha256(data).hexdigest()


def cache_key(content_digest: str, options: SamplingOptions, kind: MediaKind) -> str:
    return f"{content_digest}:{kind.value}:{options.model_dump_json(exclude_none=True)}"


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0


class FrameCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.stats = CacheStats()
        self._entries: OrderedDict[str, StoredFrames] = OrderedDict()
        self._lock = threading.Lock()  # used from the extractor's worker threads

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> StoredFrames | None:
        with self._lock:
            batch = self._entries.get(key)
            if batch is None:
                self.stats.misses += 1
                return None
            self._entries.move_to_end(key)
            self.stats.hits += 1
            return batch

    def put(self, key: str, batch: StoredFrames) -> None:
        size = batch.meta.nbytes
        if size > self.max_bytes:
            return  # larger than the whole cache: keeping it would evict everything
        with self._lock:
            if key in self._entries:
                return
            while self.bytes + size > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self.bytes -= evicted.meta.nbytes
                self.stats.evictions += 1
            self._entries[key] = batch
            self.bytes += size
