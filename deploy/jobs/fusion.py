"""Hybrid ranking: the full-text and the vector results of one query fused by reciprocal rank
(Cormack, Clarke and Büttcher, SIGIR 2009): a result scores the sum, over the lists it is in, of
1 / (k + its rank there). Ranks are all it reads, so BM25 and cosine scores need no common scale;
a result both searches found rises above one that only one found. Each fused result says which
search found it (`text`, `semantic` or `both`).

A full-text result counts in the fusion only when it contains at least `min_coverage` of the
query's words (search.hybrid_text_coverage, default all of them). A text that shares one word
of four with the query ("cleaning plates after eating" and "a chef plates a steak") is weak
evidence, and counted it outvotes the vector side's best result by sheer presence in two lists;
the vector side already ranks partial matches by meaning. Measured on the labelled set of
tests/support/library.py (bench/search.py): counting every word match made hybrid worse than
the vector search alone."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from deploy.jobs.records import SearchHit

Match = Literal["text", "semantic", "both"]


@dataclass(frozen=True)
class Ranked:
    hit: SearchHit
    match: Match
    score: float  # the fused score (hybrid), BM25 / ts_rank (text), cosine similarity (semantic)
    text_rank: int | None = None  # 1-based rank in the full-text results
    semantic_rank: int | None = None
    similarity: float | None = None  # cosine similarity to the query, when a vector matched


def _key(hit: SearchHit) -> tuple[str, str, float, float]:
    return (hit.job_id, hit.kind, hit.start_s, hit.end_s)


def only_text(hits: Sequence[SearchHit]) -> list[Ranked]:
    return [Ranked(h, "text", h.score, text_rank=i) for i, h in enumerate(hits, 1)]


def only_semantic(hits: Sequence[SearchHit]) -> list[Ranked]:
    return [
        Ranked(h, "semantic", h.score, semantic_rank=i, similarity=h.score)
        for i, h in enumerate(hits, 1)
    ]


def fuse(
    text: Sequence[SearchHit],
    semantic: Sequence[SearchHit],
    k: int,
    limit: int,
    min_coverage: float = 1.0,
) -> list[Ranked]:
    """The two rankings as one, best first, at most `limit`."""
    text = [h for h in text if h.coverage >= min_coverage - 1e-9]
    text_rank = {_key(h): i for i, h in enumerate(text, 1)}
    semantic_rank = {_key(h): i for i, h in enumerate(semantic, 1)}
    similarity = {_key(h): h.score for h in semantic}
    hits = {_key(h): h for h in (*semantic, *text)}  # the text hit's row where both have one
    fused = []
    for key, hit in hits.items():
        t, s = text_rank.get(key), semantic_rank.get(key)
        score = (1 / (k + t) if t else 0.0) + (1 / (k + s) if s else 0.0)
        match: Match = "both" if t and s else ("text" if t else "semantic")
        fused.append(Ranked(hit, match, score, t, s, similarity.get(key)))
    fused.sort(key=lambda r: (-r.score, r.text_rank or 10**9, r.semantic_rank or 10**9))
    return fused[:limit]
