"""Library search on this machine: how well each mode ranks the labelled set, and what a search
costs as a key's library grows.

    python bench/search.py [--sizes 1000 10000] [--no-postgres]

Quality: the labelled library of tests/support/library.py (16 chunks of four videos, 12
queries: paraphrases that share no word with their chunk, rare names and codes, and both),
embedded by the real all-MiniLM-L6-v2; mean reciprocal rank and recall at 1 of text, semantic
and hybrid search, on SQLite (sqlite-vec) and PostgreSQL 16 + pgvector (pgserver's build, started
by the bench). The fusion rule was chosen on this set: it measures the rule, it does not prove it
holds on other data.

Cost: a key's library of N documents (random unit vectors: the scan's cost does not depend on
what they say), one search by each mode. `cold` is the first search of a query never seen (its
embedding included), `warm` the same search repeated (the database's pages in memory); the
embedding model's load time and throughput are their own rows.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deploy.config.search_settings import SearchSettings  # noqa: E402
from deploy.config.settings import JobsSettings, StoreSettings  # noqa: E402
from deploy.core.jobs import JobState  # noqa: E402
from deploy.embedding.encoder import TextEncoder  # noqa: E402
from deploy.jobs import vector_index  # noqa: E402
from deploy.jobs.library import Library  # noqa: E402
from deploy.jobs.records import ChunkRecord, JobRecord  # noqa: E402
from deploy.jobs.store import Store, open_store  # noqa: E402
from tests.support.library import QUERIES, EncoderHandle, fill, reciprocal_rank  # noqa: E402

MODES = ("text", "semantic", "hybrid")
WORDS = ["truck", "kitchen", "meeting", "street", "dog", "bridge", "forklift", "pasta", "slide",
         "cyclist", "bus", "door"]  # fmt: skip


QUALITY = (*MODES, "hybrid, every match")  # the last: partial word matches counted too


async def quality(store: Store) -> dict[str, tuple[float, float]]:
    filled = fill(store)
    library = Library(store, EncoderHandle(), SearchSettings())  # type: ignore[arg-type]
    await library.index()
    plain = Library(store, EncoderHandle(), SearchSettings(hybrid_text_coverage=0.01))  # type: ignore[arg-type]
    scores = {}
    for name in QUALITY:
        mode = name.split(",")[0]
        searcher = plain if name != mode else library
        ranks = []
        for query, video, index in QUERIES:
            found = await searcher.search("alice", query, 10, mode)  # type: ignore[arg-type]
            ranks.append(
                reciprocal_rank(found.results, filled.job_ids[video], filled.spans[(video, index)])
            )
        scores[name] = (statistics.mean(ranks), sum(r == 1.0 for r in ranks) / len(ranks))
    return scores


def grow(store: Store, size: int, model: str, dimensions: int) -> None:
    """`size` documents of one key, with random unit vectors of `model`."""
    rng = np.random.default_rng(size)
    now = time.time()
    per_job = 100
    for n in range(size // per_job):
        job_id = f"job_size{size}_{n}"
        store.create_job(JobRecord(job_id, "big", "captions", JobState.QUEUED, f"v{n}.mp4",
                                   f"/d/v{n}.mp4", {}, now, now))  # fmt: skip
        for index in range(per_job):
            words = " ".join(rng.choice(WORDS, 6))
            chunk = ChunkRecord(job_id, index, index * 30.0, index * 30.0 + 30, f"a {words}")
            store.record_chunk(chunk, "big")
    pending = vector_index.pending(store.db, model, size + 1)
    vectors = rng.standard_normal((len(pending), dimensions)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vector_index.add(store.db, model, [(d, vectors[i]) for i, (d, _) in enumerate(pending)])


async def cost(
    store: Store, sizes: list[int], encoder: TextEncoder
) -> list[tuple[int, str, float, float]]:
    rows = []
    done = 0
    library = Library(store, EncoderHandle(), SearchSettings())  # type: ignore[arg-type]
    for size in sizes:
        grow(store, size - done, encoder.name, encoder.dimensions)
        done = size
        for n, mode in enumerate(MODES):
            query = f"{WORDS[n]} near the {WORDS[-1 - n]} number {size}"  # never searched before
            started = time.perf_counter()
            await library.search("big", query, 10, mode)  # type: ignore[arg-type]
            cold = time.perf_counter() - started
            warm_times = []
            for _ in range(5):
                started = time.perf_counter()
                await library.search("big", query, 10, mode)  # type: ignore[arg-type]
                warm_times.append(time.perf_counter() - started)
            rows.append((size, mode, cold, statistics.median(warm_times)))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    encoder = TextEncoder.load(SearchSettings(), "cpu", 2)
    load_s = time.perf_counter() - started
    texts = [f"a {' '.join(np.random.default_rng(i).choice(WORDS, 12))}" for i in range(512)]
    encoder.embed(texts[:8])
    started = time.perf_counter()
    encoder.embed(texts)
    rate = len(texts) / (time.perf_counter() - started)
    print(
        f"embedding model {encoder.name}: loaded in {load_s:.2f} s, {rate:.0f} texts/s "
        "(2 threads, batches of 32)"
    )
    databases: list[tuple[str, str]] = []
    tmp = Path(tempfile.mkdtemp(prefix="vidserve-bench-search-"))
    databases.append(("sqlite", f"sqlite:///{tmp / 'jobs.db'}"))
    server = None
    if not args.no_postgres:
        from tests.support.postgres import PostgresServer

        server = PostgresServer()
        server.start()
        databases.append(("postgresql", server.url))
    try:
        print("\nquality on the labelled set (12 queries): mean reciprocal rank / recall@1")
        print(f"{'database':>11} | " + " | ".join(f"{m:>19}" for m in QUALITY))
        measured = {}
        for name, url in databases:
            store = open_store(StoreSettings(url=url), JobsSettings(data_dir=tmp), vectors=True)
            measured[name] = store
            scores = asyncio.run(quality(store))
            print(
                f"{name:>11} | "
                + " | ".join(f"{scores[m][0]:>11.3f} / {scores[m][1]:.2f}" for m in QUALITY)
            )
        print("\ncost of one search by library size (ms): cold (a new query) / warm (repeated)")
        print(f"{'database':>11} | {'documents':>9} | " + " | ".join(f"{m:>17}" for m in MODES))
        for name, store in measured.items():
            rows = asyncio.run(cost(store, args.sizes, encoder))
            for size in args.sizes:
                cells = {mode: (c, w) for s, mode, c, w in rows if s == size}
                print(
                    f"{name:>11} | {size:>9} | "
                    + " | ".join(
                        f"{cells[m][0] * 1000:>7.1f} / {cells[m][1] * 1000:>7.1f}" for m in MODES
                    )
                )
            store.close()
    finally:
        if server is not None:
            server.remove()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
