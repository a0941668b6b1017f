"""The StreamIngest deployment: live-stream decoders (CPU), one a stream, on as many replicas as
serve_config.yaml gives it. Each replica takes streams from the jobs database by lease
(deploy/streams/watcher.py), so streams spread over the replicas, and a replica that dies
loses its streams to the others within streams.lease_s + streams.claim_interval_s.

Calls (from the Ingress):
    wake()      look for new streams now (after POST /v1/streams) instead of at the next tick
"""

from __future__ import annotations

import logging
from typing import Any

from ray import serve
from ray.serve.exceptions import RayServeException
from ray.serve.handle import DeploymentHandle

from deploy.config.settings import AppArgs
from deploy.jobs.library import Library
from deploy.jobs.store import open_store
from deploy.serving.backends import router_for
from deploy.serving.metrics import ServeBackendMetrics, ServeStreamMetrics
from deploy.streams.stream_store import StreamStore
from deploy.streams.watcher import StreamWatcher

logger = logging.getLogger("ray.serve.vidserve.streams")


def _replica_id() -> str:
    try:
        return str(serve.get_replica_context().replica_id.unique_id)
    except RayServeException:  # outside Serve (tests of the class itself)
        import uuid

        return f"local-{uuid.uuid4().hex[:8]}"


class StreamIngest:
    """Serve deployment `StreamIngest` (options in serve_config.yaml)."""

    def __init__(
        self,
        backends: dict[str, DeploymentHandle[Any]],
        args: AppArgs,
        embedder: DeploymentHandle[Any] | None = None,
        transcriber: DeploymentHandle[Any] | None = None,
    ) -> None:
        store = open_store(args.store, args.jobs, vectors=embedder is not None)
        library = Library(store, embedder, args.search) if embedder is not None else None
        self._watcher = StreamWatcher(
            StreamStore(store),
            router_for(backends, args, ServeBackendMetrics()),
            args,
            _replica_id(),
            metrics=ServeStreamMetrics(),
            indexer=library.index if library is not None else None,
            transcriber=transcriber,
        )
        # The constructor runs on the replica's event loop: the watcher's ticks run there.
        self._watcher.start()
        logger.info("stream ingest %s: database %s", self._watcher.replica, store.describe)

    async def wake(self) -> None:
        await self._watcher.tick()

    async def __del__(self) -> None:
        await self._watcher.stop()
