"""The application's own metrics, through `ray.serve.metrics` (exported by Ray's metrics agent
with the replica's application/deployment/replica tags added; Prometheus sees them prefixed
`ray_`, counters suffixed `_total`). The dashboards and alert rules in `monitoring/` query them.

Labels take values from small fixed sets only (routes, status classes, backends, stages,
outcomes, reasons): never a path, a model name given by a client, or an error message.
Each class here is what one deployment records; the code that records takes a Protocol, so
unit tests pass a plain recorder instead of Ray's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from deploy.core.jobs import JobState

logger = logging.getLogger("ray.serve.vidserve.metrics")

# Seconds. Requests run from tens of milliseconds (a cached image, /v1/models) to minutes (a long
# video on a busy GPU); stages from milliseconds (a cache hit) to the extract timeout (120 s).
REQUEST_BUCKETS_S = [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300]
STAGE_BUCKETS_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120]

# The label values a request can have; anything else is folded into "other" / "none".
ROUTES = {
    "/v1/video/analyze": "analyze",
    "/v1/chat/completions": "chat",
    "/v1/models": "models",
    "/healthz": "healthz",
    "/readyz": "readyz",
    "/v1/video/jobs": "jobs",
    "/v1/video/search": "search",
    "/v1/streams": "streams",
    "/": "web",
}
# Routes with an id in the path, by prefix.
ROUTE_PREFIXES = {"/v1/video/jobs/": "jobs", "/v1/streams/": "streams", "/static/": "web"}


def route_label(path: str) -> str:
    """The route label of a request path: one of ROUTES' values, or "other"."""
    if path in ROUTES:
        return ROUTES[path]
    return next((v for p, v in ROUTE_PREFIXES.items() if path.startswith(p)), "other")


BACKENDS = ("vllm", "ollama")
STAGES = ("upload", "download", "extract_queue", "extract", "inference")


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status < 600 else "other"


def backend_label(value: str | None) -> str:
    return value if value in BACKENDS else "none"


class HttpMetrics(Protocol):
    def started(self, route: str) -> None: ...
    def finished(self, route: str, status: int, backend: str | None, seconds: float) -> None: ...


class StageMetrics(Protocol):
    def stage(self, stage: str, seconds: float) -> None: ...


class BackendMetrics(Protocol):
    def request(self, backend: str, outcome: str) -> None: ...
    def fallback(self, from_backend: str, to_backend: str, reason: str) -> None: ...


class ServeHttpMetrics:
    """Ingress: requests by route, status class and backend; their latency; those in flight."""

    def __init__(self) -> None:
        from ray.serve import metrics

        self._requests = metrics.Counter(
            "vidserve_requests",
            description="HTTP requests by route, status class (2xx, 4xx, 5xx) and the backend "
            "that answered (vllm, ollama, none).",
            tag_keys=("route", "status_class", "backend"),  # type: ignore[arg-type]
        )
        self._latency = metrics.Histogram(
            "vidserve_request_seconds",
            description="HTTP request latency, end to end (streams: until the last byte).",
            boundaries=REQUEST_BUCKETS_S,
            tag_keys=("route", "status_class"),  # type: ignore[arg-type]
        )
        self._in_flight = metrics.Gauge(
            "vidserve_requests_in_flight",
            description="HTTP requests being handled by this ingress replica, by route.",
            tag_keys=("route",),  # type: ignore[arg-type]
        )
        self._counts: dict[str, int] = {}
        keep_reporting(self._report_in_flight)

    def _report_in_flight(self) -> None:
        for route, count in list(self._counts.items()):
            self._in_flight.set(count, tags={"route": route})

    def started(self, route: str) -> None:
        self._move(route, +1)

    def finished(self, route: str, status: int, backend: str | None, seconds: float) -> None:
        self._move(route, -1)
        klass = status_class(status)
        self._requests.inc(
            tags={"route": route, "status_class": klass, "backend": backend_label(backend)}
        )
        self._latency.observe(seconds, tags={"route": route, "status_class": klass})

    def _move(self, route: str, step: int) -> None:
        # One event loop per replica: no lock needed.
        self._counts[route] = self._counts.get(route, 0) + step
        self._in_flight.set(self._counts[route], tags={"route": route})


class ServeStageMetrics:
    """Ingress: seconds per stage of a request (upload, download, extract_queue, extract,
    inference)."""

    def __init__(self) -> None:
        from ray.serve import metrics

        self._stages = metrics.Histogram(
            "vidserve_stage_seconds",
            description="Seconds per request stage: upload (body received), download (URL "
            "fetched), extract_queue (waiting for and travelling to an extractor), extract "
            "(decoding, 0 on a cache hit), inference (the backend's answer, streams included).",
            boundaries=STAGE_BUCKETS_S,
            tag_keys=("stage",),  # type: ignore[arg-type]
        )

    def stage(self, stage: str, seconds: float) -> None:
        self._stages.observe(max(0.0, seconds), tags={"stage": stage})


class ServeBackendMetrics:
    """Ingress: inference requests per backend and outcome; fallbacks per reason."""

    def __init__(self) -> None:
        from ray.serve import metrics

        self._requests = metrics.Counter(
            "vidserve_backend_requests",
            description="Inference requests per backend and outcome (ok, client_error, timeout, "
            "engine_error, unavailable, replica_died, overloaded, not_deployed, circuit_open).",
            tag_keys=("backend", "outcome"),  # type: ignore[arg-type]
        )
        self._fallbacks = metrics.Counter(
            "vidserve_fallbacks",
            description="Requests handed from one backend to the next, per reason.",
            tag_keys=("from_backend", "to_backend", "reason"),  # type: ignore[arg-type]
        )

    def request(self, backend: str, outcome: str) -> None:
        self._requests.inc(tags={"backend": backend, "outcome": outcome})

    def fallback(self, from_backend: str, to_backend: str, reason: str) -> None:
        self._fallbacks.inc(
            tags={"from_backend": from_backend, "to_backend": to_backend, "reason": reason}
        )


class ServeJobMetrics:
    """Ingress: long-video jobs by state (the queue depth is `state="queued"`), chunks processed
    and their latency, jobs finished."""

    def __init__(self) -> None:
        from ray.serve import metrics

        self._jobs = metrics.Gauge(
            "vidserve_jobs",
            description="Jobs in the store by state (queued, running, succeeded, failed, "
            "cancelled), as the replica's runner last counted them.",
            tag_keys=("state",),  # type: ignore[arg-type]
        )
        self._chunks = metrics.Counter(
            "vidserve_job_chunks",
            description="Chunk captions attempted by jobs, per outcome (done, failed).",
            tag_keys=("outcome",),  # type: ignore[arg-type]
        )
        self._chunk_seconds = metrics.Histogram(
            "vidserve_job_chunk_seconds",
            description="Seconds to caption one chunk (its frames extracted, then answered).",
            boundaries=[*STAGE_BUCKETS_S, 300],
            tag_keys=("outcome",),  # type: ignore[arg-type]
        )
        self._finished = metrics.Counter(
            "vidserve_jobs_finished",
            description="Jobs that finished, per final state.",
            tag_keys=("state",),  # type: ignore[arg-type]
        )

    def jobs(self, by_state: dict[str, int]) -> None:
        for state in JobState:
            self._jobs.set(by_state.get(state.value, 0), tags={"state": state.value})

    def chunk(self, outcome: str, seconds: float) -> None:
        self._chunks.inc(tags={"outcome": outcome})
        self._chunk_seconds.observe(max(0.0, seconds), tags={"outcome": outcome})

    def finished(self, state: str) -> None:
        self._finished.inc(tags={"state": state})


GAUGE_REFRESH_S = 5.0


def keep_reporting(report: Callable[[], None], every_s: float = GAUGE_REFRESH_S) -> None:
    """Call `report` now and every `every_s` seconds from a daemon thread. Ray drops a gauge's
    value that was not set again within two export intervals (about 20 s): an idle replica
    would vanish from the dashboards instead of showing its value (an empty cache, nothing in
    flight). Gauges set from here keep their series alive."""

    def loop() -> None:
        while True:
            try:
                report()
            except Exception:
                logger.exception("refreshing gauges failed")
            time.sleep(every_s)

    threading.Thread(target=loop, name="vidserve-gauges", daemon=True).start()


class ServeExtractorMetrics:
    """Extractor: frames, video seconds and bytes processed; frame cache hits, misses, size."""

    def __init__(self) -> None:
        from ray.serve import metrics

        self._frames = metrics.Counter(
            "vidserve_frames_extracted",
            description="Frames decoded and resized (cache hits not counted), by media kind.",
            tag_keys=("kind",),  # type: ignore[arg-type]
        )
        self._video_seconds = metrics.Counter(
            "vidserve_video_seconds_processed",
            description="Seconds of video decoded from (the whole video's duration).",
        )
        self._bytes = metrics.Counter(
            "vidserve_media_bytes_processed",
            description="Bytes of video and images received by the extractor, by media kind.",
            tag_keys=("kind",),  # type: ignore[arg-type]
        )
        self._lookups = metrics.Counter(
            "vidserve_frame_cache_lookups",
            description="Frame cache lookups by result (hit, miss).",
            tag_keys=("result",),  # type: ignore[arg-type]
        )
        self._cache_bytes = metrics.Gauge(
            "vidserve_frame_cache_bytes", description="Bytes of frames held by the frame cache."
        )

    def extracted(self, kind: str, frames: int, video_s: float, size: int) -> None:
        """`size`: bytes received (0: read in place, a job's file); `video_s`: seconds of video
        covered. Ray's counters refuse an increment of 0."""
        if frames > 0:
            self._frames.inc(frames, tags={"kind": kind})
        if size > 0:
            self._bytes.inc(size, tags={"kind": kind})
        if video_s > 0:
            self._video_seconds.inc(video_s)

    def lookup(self, hit: bool) -> None:
        self._lookups.inc(tags={"result": "hit" if hit else "miss"})

    def held(self, size: int) -> None:
        self._cache_bytes.set(size)


class ServeSpeechMetrics:
    """Transcriber: seconds of audio transcribed, and of speech in them (after VAD)."""

    def __init__(self) -> None:
        from ray.serve import metrics

        self._audio = metrics.Counter(
            "vidserve_audio_seconds_transcribed",
            description="Seconds of audio given to the speech model.",
        )
        self._speech = metrics.Counter(
            "vidserve_speech_seconds_heard",
            description="Seconds of it that voice activity detection kept as speech.",
        )
        self._busy = metrics.Counter(
            "vidserve_transcribe_seconds",
            description="Seconds the speech model spent transcribing (busy / audio: the "
            "real-time factor).",
        )

    def transcribed(self, audio_s: float, speech_s: float, busy_s: float) -> None:
        # Ray's counters refuse an increment of 0 (silence has no speech).
        for counter, value in (
            (self._audio, audio_s),
            (self._speech, speech_s),
            (self._busy, busy_s),
        ):
            if value > 0:
                counter.inc(value)


class ServeEmbeddingMetrics:
    """Embedder: texts embedded (captions, transcripts and chapters as they are indexed; search
    queries), and the seconds it took."""

    def __init__(self) -> None:
        from ray.serve import metrics

        self._texts = metrics.Counter(
            "vidserve_texts_embedded", description="Texts the embedding model turned into vectors."
        )
        self._busy = metrics.Counter(
            "vidserve_embed_seconds", description="Seconds the embedding model spent on them."
        )

    def embedded(self, texts: int, busy_s: float) -> None:
        if texts > 0:  # Ray's counters refuse an increment of 0
            self._texts.inc(texts)
        if busy_s > 0:
            self._busy.inc(busy_s)


# Seconds from a window's end to its caption recorded (and its rules answered).
LAG_BUCKETS_S = [0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120]


class ServeStreamMetrics:
    """StreamIngest: streams by state, windows captioned and dropped, lag behind real time,
    reconnects, alerts fired and webhook deliveries."""

    def __init__(self) -> None:
        from ray.serve import metrics

        self._streams = metrics.Gauge(
            "vidserve_streams",
            description="Streams in the store by state (starting, live, reconnecting, stopped, "
            "failed), as the replica last counted them.",
            tag_keys=("state",),  # type: ignore[arg-type]
        )
        self._decoding = metrics.Gauge(
            "vidserve_stream_decoders",
            description="Stream decoders this replica holds.",
        )
        self._windows = metrics.Counter(
            "vidserve_stream_windows",
            description="Windows of live streams, per outcome: captioned, dropped (the model "
            "was still busy with the stream's earlier windows), failed.",
            tag_keys=("outcome",),  # type: ignore[arg-type]
        )
        self._lag = metrics.Histogram(
            "vidserve_stream_lag_seconds",
            description="Seconds from a window's end to its caption and rules recorded.",
            boundaries=LAG_BUCKETS_S,
        )
        self._reconnects = metrics.Counter(
            "vidserve_stream_reconnects", description="Reconnections to a stream's source."
        )
        self._alerts = metrics.Counter(
            "vidserve_stream_alerts", description="Alerts fired by streams' rules."
        )
        self._deliveries = metrics.Counter(
            "vidserve_stream_webhooks",
            description="Alert webhook deliveries, per outcome (delivered, retried, failed).",
            tag_keys=("outcome",),  # type: ignore[arg-type]
        )

    def streams(self, by_state: dict[str, int], decoding: int) -> None:
        for state in ("starting", "live", "reconnecting", "stopped", "failed"):
            self._streams.set(by_state.get(state, 0), tags={"state": state})
        self._decoding.set(decoding)

    def window(self, outcome: str, lag_s: float | None = None) -> None:
        self._windows.inc(tags={"outcome": outcome})
        if lag_s is not None:
            self._lag.observe(max(0.0, lag_s))

    def reconnected(self) -> None:
        self._reconnects.inc()

    def alert(self) -> None:
        self._alerts.inc()

    def delivery(self, outcome: str) -> None:
        self._deliveries.inc(tags={"outcome": outcome})
