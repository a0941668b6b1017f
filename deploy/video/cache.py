"""A bounded in-memory cache of extracted frames, so a second question about the same video
skips decoding.

Keyed by the video's content hash (BLAKE2b of the bytes, not the name or URL), its kind and
the sampling options; bounded by the bytes of the frames it holds, least recently used evicted
first. One per extractor replica: the same video asked again reaches a replica that has it when
there is one replica, or by chance with several (see docs/README).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

from deploy.schemas import FrameBatch, MediaKind, SamplingOptions


def cache_key(data: bytes, options: SamplingOptions, kind: MediaKind) -> str:
    digest = hashlib.blake2b(data, digest_size=20).hexdigest()
    return f"{digest}:{kind.value}:{options.model_dump_json(exclude_none=True)}"


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
        self._entries: OrderedDict[str, FrameBatch] = OrderedDict()
        self._lock = threading.Lock()  # used from the extractor's worker threads

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> FrameBatch | None:
        with self._lock:
            batch = self._entries.get(key)
            if batch is None:
                self.stats.misses += 1
                return None
            self._entries.move_to_end(key)
            self.stats.hits += 1
            return batch

    def put(self, key: str, batch: FrameBatch) -> None:
        size = int(batch.frames.nbytes)
        if size > self.max_bytes:
            return  # larger than the whole cache: keeping it would evict everything
        with self._lock:
            if key in self._entries:
                return
            while self.bytes + size > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self.bytes -= int(evicted.frames.nbytes)
                self.stats.evictions += 1
            self._entries[key] = batch
            self.bytes += size
