"""Chunk planning and the aggregation tree: every merge request fits max_model_len."""

from __future__ import annotations

import itertools

import pytest

from deploy.core.errors import InvalidRequest
from deploy.core.tokens import LINE_TOKENS, PROMPT_TOKENS, merge_budget
from deploy.jobs.plan import (
    Piece,
    chapter_spans,
    lines,
    pack,
    plan_chunks,
    tree_sizes,
)


def test_a_video_shorter_than_a_chunk_is_one_chunk() -> None:
    assert plan_chunks(12.5, 30.0, 5.0, 100) == [(0.0, 12.5)]
    assert plan_chunks(65.0, 30.0, 0.0, 100) == [(0.0, 30.0), (30.0, 60.0), (60.0, 65.0)]


def test_too_many_chunks_is_a_400_naming_chunk_s() -> None:
    with pytest.raises(InvalidRequest) as raised:
        plan_chunks(3600.0, 2.0, 0.0, 100)
    assert (raised.value.param, raised.value.code) == ("chunk_s", "too_many_chunks")
    assert "1800 chunks" in raised.value.message


def _pieces(count: int, tokens: int) -> list[Piece]:
    return [Piece(i * 30.0, i * 30.0 + 30.0, f"caption {i}", tokens) for i in range(count)]


def test_pack_keeps_order_and_the_budget() -> None:
    pieces = _pieces(10, 84)  # cost 100 each
    batches = pack(pieces, budget=350)
    assert [len(b) for b in batches] == [3, 3, 3, 1]
    assert [p for b in batches for p in b] == pieces
    assert [len(b) for b in pack(pieces, budget=10_000, max_items=4)] == [4, 4, 2]


@pytest.mark.parametrize(
    ("count", "max_model_len", "caption_tokens", "answer_tokens"),
    [(1, 4096, 256, 512), (120, 4096, 256, 512), (2000, 8192, 256, 512), (360, 2048, 128, 256)],
)
def test_every_merge_request_fits_the_context(
    count: int, max_model_len: int, caption_tokens: int, answer_tokens: int
) -> None:
    budget = merge_budget(max_model_len, answer_tokens)
    pieces = _pieces(count, caption_tokens)
    sizes = tree_sizes(pieces, budget, answer_tokens)
    assert sizes[-1] == 1  # one summary at the top
    assert all(a > b for a, b in itertools.pairwise(sizes))  # every level shrinks
    level = pieces
    for size in sizes:
        batches = pack(level, budget)
        assert len(batches) == size
        for batch in batches:  # what one merge request sends, and its answer, fit
            assert sum(p.cost for p in batch) + PROMPT_TOKENS + answer_tokens <= max_model_len
        level = [Piece(b[0].start_s, b[-1].end_s, "", answer_tokens) for b in batches]


def test_a_two_hour_video_needs_two_levels_at_4k_context() -> None:
    budget = merge_budget(4096, 512)
    assert tree_sizes(_pieces(240, 256), budget, 512) == [20, 4, 1]
    assert budget == 4096 - 512 - PROMPT_TOKENS
    assert LINE_TOKENS > 0


def test_chapters_cover_the_video_without_gaps() -> None:
    pieces = _pieces(7, 50)
    groups = pack(pieces, budget=10_000, max_items=3)
    spans = chapter_spans(groups, duration_s=200.0)
    assert spans == [(0.0, 90.0), (90.0, 180.0), (180.0, 210.0)]
    # a missing chunk (failed) leaves no hole: the chapter before stretches to the next one
    holed = [p for p in pieces if p.start_s != 90.0]
    spans = chapter_spans(pack(holed, budget=10_000, max_items=3), duration_s=210.0)
    assert spans[0][0] == 0.0
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    assert spans[-1][1] == 210.0


def test_lines_carry_absolute_timestamps() -> None:
    text = lines([Piece(3725.0, 3755.0, " a goal \n", 3)])
    assert text == "[01:02:05-01:02:35] a goal"
