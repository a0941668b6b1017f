"""CPU deployment that turns uploaded video bytes into sampled, resized frames.

A thin async shell around the pure `deploy.video.extract`: decoding runs in a worker thread so the
replica's event loop keeps serving other requests; OpenCV's own thread pool is sized to the CPUs
Ray gave the replica.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import ray

from deploy.config import ExtractionSettings
from deploy.metrics import ServeExtractorMetrics, keep_reporting
from deploy.schemas import FrameBatch, MediaKind, SamplingOptions
from deploy.video import extract, frames_from_images, use_cpus
from deploy.video.cache import FrameCache, cache_key
from deploy.video.chunks import Chunk, extract_chunks

logger = logging.getLogger("ray.serve.vidserve.extractor")

DEPLOYMENT_NAME = "FrameExtractor"


def _replica_cpus() -> int:
    cpus = float(ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0))
    return max(1, round(cpus))


class FrameExtractor:
    """Serve deployment `FrameExtractor` (options in serve_config.yaml)."""

    def __init__(self, settings: ExtractionSettings) -> None:
        self._settings = settings
        use_cpus(_replica_cpus())
        self._cache = FrameCache(settings.cache_max_bytes)
        self._metrics = ServeExtractorMetrics()
        # Every replica reports its cache size, an empty one too, idle or not.
        keep_reporting(lambda: self._metrics.held(self._cache.bytes))

    async def extract(
        self, data: bytes, options: SamplingOptions, kind: MediaKind, param: str | None = None
    ) -> FrameBatch:
        return await asyncio.to_thread(self._extract, data, options, kind, param)

    def _extract(
        self, data: bytes, options: SamplingOptions, kind: MediaKind, param: str | None
    ) -> FrameBatch:
        key = cache_key(data, options, kind)
        cached = self._cache.get(key)
        self._metrics.lookup(cached is not None)
        if cached is not None:
            logger.info("frame cache hit: %d frames (%s)", cached.count, cached.kind.value)
            return dataclasses.replace(cached, extract_s=0.0, cached=True)
        batch = extract(data, options, self._settings, kind, param)
        self._metrics.extracted(kind.value, batch.count, batch.duration_s, len(data))
        logger.info(
            "extracted %d frames (%s%s) in %.3fs",
            batch.count,
            batch.kind.value,
            f", read by {batch.reader}" if batch.reader else "",
            batch.extract_s,
        )
        self._cache.put(key, batch)
        self._metrics.held(self._cache.bytes)
        return batch

    async def extract_chunks(
        self, data: bytes, chunk_s: float, overlap_s: float, frames_per_chunk: int
    ) -> list[Chunk]:
        """A long video as chunks of `chunk_s` seconds overlapping by `overlap_s`, each with
        `frames_per_chunk` frames, decoded in one pass (video/chunks.py)."""
        return await asyncio.to_thread(
            extract_chunks,
            data,
            chunk_s=chunk_s,
            overlap_s=overlap_s,
            frames_per_chunk=frames_per_chunk,
            settings=self._settings,
        )

    async def from_images(
        self, images: list[bytes], options: SamplingOptions, param: str
    ) -> FrameBatch:
        """A video sent as a list of frames (`data:video/jpeg;base64,f1,f2,...`)."""
        batch = await asyncio.to_thread(frames_from_images, images, options, self._settings, param)
        self._metrics.extracted("frames", batch.count, 0.0, sum(len(image) for image in images))
        logger.info(
            "took %d of %d listed frames in %.3fs", batch.count, batch.total_frames, batch.extract_s
        )
        return batch
