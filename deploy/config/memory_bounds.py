"""The worst-case memory of an ingress and an extractor replica, from the configuration.

What docs/limits.md states is computed here: tests/unit/config/test_memory_bounds.py checks the
page against it, tests/integration/config/test_ingress_memory.py the ingress's real peak.
"""

from __future__ import annotations

from dataclasses import dataclass

from deploy.config.settings import AppArgs

# A replica's own memory (Python, Ray's worker, the libraries), measured on an idle replica.
REPLICA_BASE_BYTES = 200 * 1024 * 1024
# Bytes per pixel of a decoded frame in the decoder (YUV 4:2:0) and of an output frame (RGB).
_DECODER_BYTES_PER_PIXEL = 1.5
_RGB_BYTES_PER_PIXEL = 3


@dataclass(frozen=True)
class ReplicaMemory:
    heap_bytes: int  # the process's own memory at worst
    shm_bytes: int = 0  # /dev/shm it may use besides (temporary copies of videos)

    def describe(self) -> str:
        """As docs/limits.md states it."""
        text = f"{self.heap_bytes / 2**30:.1f} GiB"
        if self.shm_bytes:
            text += f" + {self.shm_bytes / 2**30:.1f} GiB of /dev/shm"
        return text


def ingress(args: AppArgs) -> ReplicaMemory:
    """Bodies are admitted up to http.max_inflight_bytes, each counted with what is made of
    it (its spool buffer, decoded base64, the copy handed to the extractor): api/guard.py."""
    return ReplicaMemory(REPLICA_BASE_BYTES + args.http.max_inflight_bytes)


def extractor(args: AppArgs, max_ongoing_requests: int, cpus: int) -> ReplicaMemory:
    """Per request in flight: the video's bytes, the output frames and the decoders' frames."""
    settings = args.extraction
    decoder = int(settings.max_source_pixels * _DECODER_BYTES_PER_PIXEL) * max(1, cpus)
    output = settings.total_pixels * _RGB_BYTES_PER_PIXEL
    per_request = settings.max_upload_bytes + output + decoder
    return ReplicaMemory(
        REPLICA_BASE_BYTES + per_request * max_ongoing_requests,
        shm_bytes=settings.max_upload_bytes * max_ongoing_requests,
    )
