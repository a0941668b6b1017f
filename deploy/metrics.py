"""The application's own metrics, through `ray.serve.metrics` (exported by Ray's metrics agent
with the replica's deployment/application tags added; Prometheus sees them prefixed `ray_`).

Labels take values from small fixed sets only (backend names, outcomes, reasons).
"""

from __future__ import annotations

from typing import Protocol


class BackendMetrics(Protocol):
    def request(self, backend: str, outcome: str) -> None: ...
    def fallback(self, from_backend: str, to_backend: str, reason: str) -> None: ...


class ServeBackendMetrics:
    """Requests per backend and outcome; fallbacks per reason."""

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


class ServeCacheMetrics:
    """Frame cache hits and misses, and the bytes it holds, per extractor replica."""

    def __init__(self) -> None:
        from ray.serve import metrics

        self._lookups = metrics.Counter(
            "vidserve_frame_cache_lookups",
            description="Frame cache lookups by result (hit, miss).",
            tag_keys=("result",),  # type: ignore[arg-type]
        )
        self._bytes = metrics.Gauge(
            "vidserve_frame_cache_bytes", description="Bytes of frames held by the frame cache."
        )

    def lookup(self, hit: bool) -> None:
        self._lookups.inc(tags={"result": "hit" if hit else "miss"})

    def held(self, size: int) -> None:
        self._bytes.set(size)
