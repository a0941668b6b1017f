"""`vidserve reindex`: give every search document (caption, transcript, chapter) a vector of
the configured embedding model, in this process, against the jobs database the config names.

Run it after changing search.model (VIDSERVE_EMBEDDING_MODEL): vectors are stored with the model
that made them and search compares only the current model's, so until it has run, what has no
vector of the new model is found by its words alone (a search says how many in its `note`).
Safe while the service runs (a document indexed meanwhile is skipped, each kept once) and
resumable (it starts from what still has no vector). `--drop-other-models` then deletes the
vectors of every other model.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TextIO

from deploy.config.settings import AppArgs
from deploy.embedding.encoder import TextEncoder
from deploy.jobs import vector_index
from deploy.jobs.library import plain
from deploy.jobs.store import open_store


@dataclass(frozen=True)
class Reindex:
    args: AppArgs
    batch: int = 256
    drop_other_models: bool = False
    threads: int = 2


def run(request: Reindex, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = request.args
    if not args.search.semantic:
        print("search.semantic is off: there are no vectors to build", file=out)
        return 2
    store = open_store(args.store, args.jobs, vectors=True)
    try:
        print(f"jobs database: {store.describe}", file=out)
        encoder = TextEncoder.load(args.search, "cpu", request.threads)
        total, indexed = vector_index.counts(store.db, encoder.name)
        todo = total - indexed
        print(f"model {encoder.name}: {indexed} of {total} texts have a vector", file=out)
        started, done, after = time.perf_counter(), 0, 0
        while batch := vector_index.pending(store.db, encoder.name, request.batch, after=after):
            vectors = encoder.embed([plain(text) for _, text in batch])
            pairs = [(doc_id, vectors[i]) for i, (doc_id, _) in enumerate(batch)]
            done += vector_index.add(store.db, encoder.name, pairs)
            after = batch[-1][0]
            rate = done / max(time.perf_counter() - started, 1e-6)
            print(f"  {done}/{todo} embedded ({rate:.0f} texts/s)", file=out, flush=True)
        print(f"done: {done} texts embedded in {time.perf_counter() - started:.1f} s", file=out)
        if request.drop_other_models:
            dropped = vector_index.drop_other_models(store.db, encoder.name)
            print(f"deleted {dropped} vectors of other models", file=out)
    finally:
        store.close()
    return 0
