"""Search across a key's whole library, by words and by meaning, and keeping its vectors
current.

    library = Library(store, embedder, settings)
    found = await library.search(owner, "the truck refuels", 10)        # hybrid by default
    await library.index(job_id)       # vectors for the job's documents that have none yet

Full-text results come from jobs/text_index.py, vector results from jobs/vector_index.py (the
query embedded by the Embedder deployment), fused by reciprocal rank (jobs/fusion.py). When the
Embedder cannot answer (loading, down, search.semantic off) a hybrid search answers from the
full-text index alone and says so in `note`; a semantic one is a 503."""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from dataclasses import dataclass
from typing import Any

from ray.serve.handle import DeploymentHandle

from deploy.config.search_settings import SearchMode, SearchSettings
from deploy.core.errors import InvalidRequest, VidserveError
from deploy.core.search import Embedded
from deploy.embedding.encoder import model_name
from deploy.jobs import vector_index
from deploy.jobs.fusion import Ranked, fuse, only_semantic, only_text
from deploy.jobs.store import Store
from deploy.serving.handles import call_stage

logger = logging.getLogger("ray.serve.vidserve.library")

INDEX_BATCH = 64  # documents embedded per Embedder call while indexing


@dataclass(frozen=True)
class Found:
    results: list[Ranked]
    mode: SearchMode  # what was searched (hybrid asked of a library without vectors: text)
    model: str | None  # the embedding model of the vectors searched
    note: str | None = None  # why the search was narrower than asked, when it was
    unindexed: int = 0  # the key's documents without a vector of the model yet


class Library:
    def __init__(
        self,
        store: Store,
        embedder: DeploymentHandle[Any] | None,
        settings: SearchSettings,
    ) -> None:
        self._store = store
        self._embedder = embedder if settings.semantic else None
        self._settings = settings
        self.model = model_name(settings.model) if self._embedder is not None else None

    async def embed(self, texts: list[str]) -> Embedded:
        if self._embedder is None:
            raise InvalidRequest(
                "search by meaning is off here (search.semantic: false); search with "
                "?mode=text or hybrid (words alone here), or turn it on",
                param="mode",
                code="semantic_search_disabled",
            )
        call = self._embedder.embed.remote(texts)
        embedded: Embedded = await call_stage(
            call, stage="embed", timeout_s=self._settings.request_timeout_s + 5
        )
        return embedded

    async def search(
        self,
        owner: str,
        query: str,
        limit: int,
        mode: SearchMode | None = None,
        job_id: str | None = None,
    ) -> Found:
        mode = mode or self._settings.default_mode
        text_hits: list[Any] = []
        if mode != "semantic":
            text_hits = await asyncio.to_thread(
                self._store.search, owner, query, self._settings.candidates, job_id
            )
        if mode == "text":
            return Found(only_text(text_hits)[:limit], "text", None)
        try:
            query_vector = (await self.embed([query])).vectors[0]
        except VidserveError as exc:
            if mode == "semantic":
                raise
            narrowed = f"searched by words only: {exc.message}"
            return Found(only_text(text_hits)[:limit], "text", None, narrowed)
        semantic_hits = await asyncio.to_thread(
            functools.partial(
                vector_index.search,
                self._store.db,
                owner,
                self.model or "",
                query_vector,
                self._settings.candidates,
                job_id=job_id,
                min_similarity=self._settings.min_similarity,
            )
        )
        total, indexed = await asyncio.to_thread(
            vector_index.counts, self._store.db, self.model or "", owner
        )
        unindexed = total - indexed
        note = None
        if unindexed:
            note = (
                f"{unindexed} of this key's {total} texts have no vector of {self.model} yet "
                "(being indexed, or made with another model: `vidserve reindex`); they are "
                "found by their words only"
            )
        if mode == "semantic":
            results = only_semantic(semantic_hits)[:limit]
        else:
            results = fuse(
                text_hits,
                semantic_hits,
                self._settings.rrf_k,
                limit,
                self._settings.hybrid_text_coverage,
            )
        return Found(results, mode, self.model, note, unindexed)

    async def index(self, job_id: str | None = None) -> int:
        """Embed the documents (of `job_id`, or all) that have no vector of the model yet;
        the number indexed. Never raises: what cannot be indexed now is left for later (the
        next chunk, `vidserve reindex`) and logged."""
        if self._embedder is None or self.model is None:
            return 0
        done, after = 0, 0
        try:
            while True:
                batch = await asyncio.to_thread(
                    vector_index.pending, self._store.db, self.model, INDEX_BATCH, job_id, after
                )
                if not batch:
                    return done
                embedded = await self.embed([plain(text) for _, text in batch])
                if embedded.model != self.model:
                    logger.warning(
                        "the Embedder runs %s but search.model names %s: not indexed",
                        embedded.model,
                        self.model,
                    )
                    return done
                pairs = [(doc_id, embedded.vectors[i]) for i, (doc_id, _) in enumerate(batch)]
                done += await asyncio.to_thread(vector_index.add, self._store.db, self.model, pairs)
                after = batch[-1][0]
        except VidserveError as exc:
            logger.warning("search vectors of job %s left for later: %s", job_id, exc.message)
        return done


_TIMES = re.compile(r"^\[\d{1,2}:\d\d(?::\d\d)?-\d{1,2}:\d\d(?::\d\d)?\] ", re.MULTILINE)


def plain(text: str) -> str:
    """A transcript's words without its `[mm:ss-mm:ss] ` line stamps: times are not meaning."""
    return _TIMES.sub("", text)
