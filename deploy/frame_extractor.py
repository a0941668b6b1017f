"""CPU deployment that turns a video or image (uploaded bytes, or a URL it downloads) into
sampled, resized frames.

A thin async shell around the pure `deploy.video.extract`: decoding runs in a worker thread so the
replica's event loop keeps serving other requests; OpenCV's own thread pool is sized to the CPUs
Ray gave the replica. What it returns is `StoredFrames`: the pixels are put in Ray's object store
here, once, and only a reference and the small metadata go back to the ingress, which hands the
reference to the engine replica.

A client's error (a corrupt or oversized video: 4xx) is answered as a `Refusal` value, not
raised, so Ray does not log a traceback for each (core/errors.py).

Calls, all routed by the affinity router (deploy/serving/affinity_router.py) to the replica that
holds the video's frames:
    lookup(digest, ...)          a cache hit, or None: the ingress then sends the bytes
    extract(data, digest, ...)   decode bytes the ingress hashed as they streamed in
    extract_url(url, ...)        download (SSRF guard, deploy/serving/fetch.py), hash, then as above
    from_images(images, ...)     a video sent as its frames (not cached)
A long-video job's chunks (deploy/jobs/job_runner.py), spread over every replica:
    probe_file(path)             the duration of a job's video, read in place
    extract_file(path, ...)      one chunk's frames (a time window), its index kept per file
The speech track (deploy/transcriber.py):
    extract_audio_kept(digest, ...)  an upload's audio from the bytes kept after its frames
                                 (no video sent twice); AUDIO_NOT_KEPT: not here, send them
    extract_audio(data, ...)     the audio track as 16 kHz mono, into the object store
    extract_audio_file(path, ...)  the same of a job's video, read in place
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import ray

from deploy.config.deployments import EXTRACTOR_NAME
from deploy.config.settings import ExtractionSettings, UrlFetchSettings
from deploy.core.errors import (
    InvalidRequest,
    UnprocessableInput,
    VidserveError,
    refusals_returned,
)
from deploy.core.messages import FrameBatch, MediaKind, SamplingOptions, StoredFrames
from deploy.core.speech import AUDIO_NOT_KEPT, AudioClip
from deploy.serving.fetch import UrlFetcher
from deploy.serving.metrics import ServeExtractorMetrics, keep_reporting
from deploy.video import extract, frames_from_images, use_cpus
from deploy.video.audio import has_audio_track, read_audio
from deploy.video.cache import FrameCache, cache_key, digest
from deploy.video.capture import as_file
from deploy.video.container import sniff
from deploy.video.decode import extract_file
from deploy.video.limits import apply_library_caps
from deploy.video.probe import VideoIndex, probe

logger = logging.getLogger("ray.serve.vidserve.extractor")

DEPLOYMENT_NAME = EXTRACTOR_NAME


DOWNLOAD_KEEP_S = 120.0  # a URL's (or upload's) bytes kept after its frames, for its audio
DOWNLOAD_KEEP_BYTES = 512 * 1024 * 1024


def _uploaded(content_digest: str) -> str:
    """The key an upload's bytes are kept under (beside URLs)."""
    return f"sha256:{content_digest}"


def _replica_cpus() -> int:
    cpus = float(ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0))
    return max(1, round(cpus))


def frames_id(key: str, settings: ExtractionSettings) -> str:
    """A name for these exact pixels: the cache key plus the settings that shape the frames (a
    change of pixel budget gives other frames). vLLM takes it as the item's multimodal UUID, so
    its processor cache and prefix cache know a repeat without hashing the pixels."""
    shaping = settings.model_dump_json(
        include={"patch_factor", "min_pixels", "max_pixels", "total_pixels"}
    )
    return hashlib.sha256(f"{key}|{shaping}".encode()).hexdigest()[:32]


class FrameExtractor:
    """Serve deployment `FrameExtractor` (options in serve_config.yaml)."""

    def __init__(
        self,
        settings: ExtractionSettings,
        url_fetch: UrlFetchSettings,
        jobs_dir: Path | None = None,
    ) -> None:
        self._settings = settings
        # Files a job may name: its uploads (jobs.data_dir), and url_fetch.local_dir.
        self._file_roots = [p.resolve() for p in (jobs_dir, url_fetch.local_dir) if p]
        self._indexes: OrderedDict[tuple[str, int, int], VideoIndex | None] = OrderedDict()
        apply_library_caps(settings)  # before this process decodes its first image
        use_cpus(_replica_cpus())
        self._cache = FrameCache(settings.cache_max_bytes)
        self._fetcher = UrlFetcher(
            url_fetch, max_bytes=min(url_fetch.max_bytes, settings.max_upload_bytes)
        )
        # A URL's bytes (or an upload's with an audio track, by digest) for a while after its
        # frames were read, so that its audio (asked next, by the same key, so to this replica)
        # is not downloaded or sent twice. A video without one is never asked for its audio:
        # its frames' metadata says so (FrameMeta.has_audio).
        self._downloads: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._metrics = ServeExtractorMetrics()
        # Every replica reports its cache size, an empty one too, idle or not.
        keep_reporting(lambda: self._metrics.held(self._cache.bytes))

    @refusals_returned
    async def lookup(
        self, content_digest: str, options: SamplingOptions, kind: MediaKind
    ) -> StoredFrames | None:
        """The frames of a video this replica has already extracted, or None."""
        return self._cached(cache_key(content_digest, options, kind))

    @refusals_returned
    async def extract(
        self,
        data: bytes,
        content_digest: str,
        options: SamplingOptions,
        kind: MediaKind,
        param: str | None = None,
        *,
        look_up: bool = False,
    ) -> StoredFrames:
        """`content_digest` is `video.cache.digest(data)`, computed by the ingress as the bytes
        streamed in (so it is not computed twice). `look_up`: the ingress has not called
        `lookup` (a video it has not sent before): the cache is looked in here first, saving
        the cold path a round trip."""
        stored = self._cached(cache_key(content_digest, options, kind)) if look_up else None
        if stored is None:
            stored = await asyncio.to_thread(
                self._extract, data, content_digest, options, kind, param
            )
        if kind is MediaKind.VIDEO and stored.meta.has_audio is not False:
            self._keep_download(_uploaded(content_digest), data)  # its audio is asked next
        return stored

    @refusals_returned
    async def extract_url(
        self, url: str, options: SamplingOptions, kind: MediaKind | None, param: str
    ) -> StoredFrames:
        """Download `url` here (not in the ingress), then extract; `kind` None: told by the
        bytes."""
        started = time.perf_counter()
        try:
            data = await self._fetcher.fetch(url)
        except VidserveError as exc:
            exc.param = param
            raise
        download_s = time.perf_counter() - started
        self._keep_download(url, data)
        content_digest = await asyncio.to_thread(digest, data)
        found = kind or sniff(data[:512]).kind or MediaKind.VIDEO
        # The one cache lookup of a download (an upload's is the ingress's `lookup` call).
        stored = self._cached(cache_key(content_digest, options, found))
        if stored is None:
            stored = await asyncio.to_thread(
                self._extract, data, content_digest, options, found, param
            )
        return dataclasses.replace(stored, download_s=download_s)

    def _cached(self, key: str) -> StoredFrames | None:
        stored = self._cache.get(key)
        self._metrics.lookup(stored is not None)
        if stored is None:
            return None
        logger.info("frame cache hit: %d frames (%s)", stored.meta.count, stored.meta.kind.value)
        meta = dataclasses.replace(stored.meta, extract_s=0.0, cached=True)
        return dataclasses.replace(stored, meta=meta)

    def _extract(
        self,
        data: bytes,
        content_digest: str,
        options: SamplingOptions,
        kind: MediaKind,
        param: str | None,
    ) -> StoredFrames:
        """Decode and cache; the caller has looked the frames up already (counted once)."""
        key = cache_key(content_digest, options, kind)
        batch = extract(data, options, self._settings, kind, param)
        if kind is MediaKind.VIDEO:  # from the header: the speech stage then asks no audio of
            batch = batch.with_meta(has_audio=has_audio_track(data))  # a video without any
        self._metrics.extracted(kind.value, batch.count, batch.meta.duration_s, len(data))
        logger.info(
            "extracted %d frames (%s%s) in %.3fs",
            batch.count,
            batch.meta.kind.value,
            f", read by {batch.meta.reader}" if batch.meta.reader else "",
            batch.meta.extract_s,
        )
        stored = self._store(batch, frames_id(key, self._settings))
        self._cache.put(key, stored)
        self._metrics.held(self._cache.bytes)
        return stored

    @staticmethod
    def _store(batch: FrameBatch, name: str) -> StoredFrames:
        """The pixels into Ray's object store, once; the reference is what travels on."""
        return StoredFrames(batch.meta, ray.put(batch.frames), name)

    @refusals_returned
    async def from_images(
        self, images: list[bytes], options: SamplingOptions, param: str
    ) -> StoredFrames:
        """A video sent as a list of frames (`data:video/jpeg;base64,f1,f2,...`)."""
        batch = await asyncio.to_thread(frames_from_images, images, options, self._settings, param)
        self._metrics.extracted("frames", batch.count, 0.0, sum(len(image) for image in images))
        logger.info(
            "took %d of %d listed frames in %.3fs",
            batch.count,
            batch.meta.total_frames,
            batch.meta.extract_s,
        )
        return self._store(batch, "")

    @refusals_returned
    async def probe_file(self, path: str, param: str) -> float:
        """The duration in seconds of a job's video (read in place)."""
        index = await asyncio.to_thread(self._index, path, param)
        if index is None:
            raise UnprocessableInput(
                "this video has no frame index, so it cannot be split in chunks",
                param=param,
                code="corrupt_media",
            )
        return index.duration_s

    @refusals_returned
    async def extract_file(self, path: str, options: SamplingOptions, param: str) -> StoredFrames:
        """One chunk of a job's video: the frames `options` asks for (a time window)."""

        def work() -> FrameBatch:
            index = self._index(path, param)
            batch = extract_file(path, options, self._settings, index, param)
            return batch.with_meta(has_audio=has_audio_track(path))

        batch = await asyncio.to_thread(work)
        covered = min(options.end_s or batch.meta.duration_s, batch.meta.duration_s) - (
            options.start_s or 0
        )
        self._metrics.extracted("video", batch.count, covered, 0)
        return self._store(batch, "")

    @refusals_returned
    async def extract_audio(
        self,
        data: bytes,
        max_audio_s: float,
        param: str,
        start_s: float | None = None,
        end_s: float | None = None,
    ) -> AudioClip | None:
        """The audio track of uploaded bytes (a video or an audio file) as 16 kHz mono, its
        samples put in the object store for the Transcriber; None when there is no audio."""
        return await self._audio_of(data, max_audio_s, param, start_s, end_s)

    @refusals_returned
    async def extract_audio_kept(
        self,
        content_digest: str,
        max_audio_s: float,
        param: str,
        start_s: float | None = None,
        end_s: float | None = None,
    ) -> AudioClip | str | None:
        """`extract_audio` of an upload whose frames this replica extracted a moment ago, from
        its kept bytes; None when it has no audio track;
        AUDIO_NOT_KEPT when its bytes are not here (the caller then sends them)."""
        data = self._recent_download(_uploaded(content_digest))
        if data is None:
            return AUDIO_NOT_KEPT
        return await self._audio_of(data, max_audio_s, param, start_s, end_s)

    async def _audio_of(
        self,
        data: bytes,
        max_audio_s: float,
        param: str,
        start_s: float | None,
        end_s: float | None,
    ) -> AudioClip | None:
        def work() -> AudioClip | None:
            with as_file(data) as path:
                return read_audio(path, max_audio_s, start_s, end_s, param)

        return _stored_audio(await asyncio.to_thread(work))

    @refusals_returned
    async def extract_audio_url(
        self,
        url: str,
        max_audio_s: float,
        param: str,
        start_s: float | None = None,
        end_s: float | None = None,
    ) -> AudioClip | None:
        """`extract_audio` of a video sent by URL: its bytes as `extract_url` downloaded them
        (kept for DOWNLOAD_KEEP_S), or downloaded again."""
        data = self._recent_download(url)
        if data is None:
            try:
                data = await self._fetcher.fetch(url)
            except VidserveError as exc:
                exc.param = param
                raise
        return await self._audio_of(data, max_audio_s, param, start_s, end_s)

    def _keep_download(self, url: str, data: bytes) -> None:
        now = time.monotonic()
        self._downloads[url] = (now, data)
        self._downloads.move_to_end(url)
        held = sum(len(d) for _, d in self._downloads.values())
        while self._downloads and (
            held > DOWNLOAD_KEEP_BYTES
            or now - next(iter(self._downloads.values()))[0] > DOWNLOAD_KEEP_S
        ):
            _, (_, dropped) = self._downloads.popitem(last=False)
            held -= len(dropped)

    def _recent_download(self, url: str) -> bytes | None:
        kept = self._downloads.get(url)
        if kept is None or time.monotonic() - kept[0] > DOWNLOAD_KEEP_S:
            return None
        return kept[1]

    @refusals_returned
    async def extract_audio_file(
        self,
        path: str,
        max_audio_s: float,
        param: str,
        start_s: float | None = None,
        end_s: float | None = None,
    ) -> AudioClip | None:
        """`extract_audio` of a job's video, read in place."""
        resolved = self._allowed(path, param)
        clip = await asyncio.to_thread(
            read_audio, str(resolved), max_audio_s, start_s, end_s, param
        )
        if clip is None or not isinstance(clip.samples, np.ndarray):
            return clip
        return dataclasses.replace(clip, samples=ray.put(clip.samples))

    def _allowed(self, path: str, param: str) -> Path:
        resolved = Path(path).resolve()
        if not any(resolved.is_relative_to(root) for root in self._file_roots):
            raise InvalidRequest(
                f"{path} is outside the directories jobs may read (jobs.data_dir, "
                "url_fetch.local_dir)",
                param=param,
                code="file_not_allowed",
            )
        return resolved

    def _index(self, path: str, param: str) -> VideoIndex | None:
        """The probe of a job's file, kept for the few files being chunked (one probe per file,
        not per chunk)."""
        resolved = self._allowed(path, param)
        try:
            stat = resolved.stat()
        except OSError:
            raise UnprocessableInput(
                f"the video file {path} is gone", param=param, code="missing_file"
            ) from None
        key = (str(resolved), stat.st_mtime_ns, stat.st_size)
        if key not in self._indexes:
            self._indexes[key] = probe(str(resolved), self._settings)
            while len(self._indexes) > _KEPT_INDEXES:
                self._indexes.popitem(last=False)
        self._indexes.move_to_end(key)
        return self._indexes[key]


def _stored_audio(clip: AudioClip | None) -> AudioClip | None:
    """The clip with its samples put in Ray's object store (once; the Transcriber reads them)."""
    if clip is None or not isinstance(clip.samples, np.ndarray):
        return clip
    return dataclasses.replace(clip, samples=ray.put(clip.samples))


# Jobs whose video indexes a replica keeps (a 3-hour video's index is a few MB).
_KEPT_INDEXES = 8
