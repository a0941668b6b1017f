"""Reciprocal rank fusion (deploy/jobs/fusion.py): ranks, not scores; found by both rises; a
full-text result with only some of the query's words does not count in hybrid."""

from __future__ import annotations

from deploy.jobs.fusion import fuse, only_semantic, only_text
from deploy.jobs.records import SearchHit


def hit(name: str, score: float = 1.0, coverage: float = 1.0) -> SearchHit:
    start = float(ord(name[0]))
    return SearchHit("job", "v.mp4", "caption", start, start + 1, name, score, coverage)


def test_a_result_both_searches_found_ranks_above_those_one_found() -> None:
    text = [hit("alpha", 9.0), hit("bravo", 5.0)]
    semantic = [hit("charlie", 0.9), hit("bravo", 0.8)]
    fused = fuse(text, semantic, k=60, limit=10)
    bravo = fused[0]
    assert bravo.hit.text == "bravo"
    assert (bravo.match, bravo.text_rank, bravo.semantic_rank) == ("both", 2, 2)
    assert bravo.score == 1 / 62 + 1 / 62
    assert bravo.similarity == 0.8
    assert {r.hit.text: r.match for r in fused[1:]} == {"alpha": "text", "charlie": "semantic"}


def test_scores_do_not_matter_only_ranks() -> None:
    a = fuse([hit("alpha", 1000.0)], [hit("bravo", 0.01)], k=60, limit=10)
    b = fuse([hit("alpha", 0.001)], [hit("bravo", 0.99)], k=60, limit=10)
    assert [r.score for r in a] == [r.score for r in b]


def test_a_partial_word_match_does_not_count_in_hybrid() -> None:
    text = [hit("plates", 9.0, coverage=1 / 3), hit("dishes", 2.0, coverage=1.0)]
    semantic = [hit("dishes", 0.5), hit("plates", 0.4)]
    fused = fuse(text, semantic, k=60, limit=10)
    assert [(r.hit.text, r.match) for r in fused] == [("dishes", "both"), ("plates", "semantic")]
    counted = fuse(text, semantic, k=60, limit=10, min_coverage=0.3)
    assert counted[0].hit.text == "plates"  # counted, the weak match outvotes the vector side


def test_limit_and_single_lists() -> None:
    text = [hit(c) for c in "abcdef"]
    assert len(fuse(text, [], k=60, limit=3)) == 3
    assert [r.text_rank for r in only_text(text[:2])] == [1, 2]
    ranked = only_semantic([hit("x", 0.7)])
    assert (ranked[0].match, ranked[0].similarity, ranked[0].semantic_rank) == ("semantic", 0.7, 1)
