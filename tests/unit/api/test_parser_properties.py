"""Property tests (hypothesis) for what parses client input: whatever arrives, the answer is a
value or a 4xx naming what was wrong, never another exception (a 500), and what is accepted
keeps its invariants (issue 26)."""

from __future__ import annotations

import itertools
import json
import math
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deploy.api import json_body
from deploy.api.jobs_protocol import parse_job_request
from deploy.api.openai_protocol import parse_chat
from deploy.api.sampling_options import OPTIONS, sampling_options
from deploy.config.settings import AppArgs, JobsSettings, StoreSettings
from deploy.core.errors import VidserveError
from deploy.core.jobs import JobState
from deploy.core.numbers import MAX_DIGITS, decimal
from deploy.jobs.records import JobRecord
from deploy.jobs.store import open_store
from deploy.video.chunks import chunk_count, chunk_spans

ARGS = AppArgs()
MODEL = ARGS.llm.model
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _named(exc: VidserveError, prefix: str) -> None:
    assert exc.param is not None
    assert exc.param.startswith(prefix)


def _client_error(exc: VidserveError) -> None:
    assert 400 <= exc.status_code < 500, (exc.status_code, exc.message)
    assert exc.message


@FAST
@given(st.dictionaries(st.sampled_from([*OPTIONS, "x"]), json_values, max_size=6))
def test_sampling_options_are_valid_or_a_4xx(values: dict[str, Any]) -> None:
    try:
        options = sampling_options(values, ARGS.extraction, param_prefix="video_options.")
    except VidserveError as exc:
        _client_error(exc)
        _named(exc, "video_options.")
        return
    if options.num_frames is not None:
        assert 1 <= options.num_frames <= ARGS.extraction.max_num_frames
    if options.fps is not None:
        assert 0 < options.fps <= ARGS.extraction.max_fps
    if options.start_s is not None and options.end_s is not None:
        assert options.end_s > options.start_s


job_fields = st.fixed_dictionaries(
    {"task": st.sampled_from(["summarize", "chapters", "captions", "x"])},
    optional={
        "chunk_s": json_values,
        "overlap_s": json_values,
        "frames_per_chunk": json_values,
        "url": json_values,
        "prompt": json_values,
        "response_format": json_values,
        "extra": json_values,
    },
)


@FAST
@given(job_fields)
def test_job_requests_are_a_bounded_plan_or_a_4xx(raw: dict[str, Any]) -> None:
    try:
        spec, _ = parse_job_request(raw, ARGS)
    except VidserveError as exc:
        _client_error(exc)
        return
    jobs: JobsSettings = ARGS.jobs
    step = spec.chunk_s - spec.overlap_s
    assert step >= jobs.min_chunk_step_s
    assert math.isfinite(spec.chunk_s)
    assert math.isfinite(spec.overlap_s)
    # The longest video there can be makes a number of chunks computed at once.
    started = time.perf_counter()
    count = chunk_count(ARGS.extraction.max_duration_s, spec.chunk_s, spec.overlap_s)
    assert time.perf_counter() - started < 0.01
    assert count <= ARGS.extraction.max_duration_s / jobs.min_chunk_step_s + 1


@FAST
@given(
    st.floats(min_value=0.001, max_value=10_800),
    st.floats(min_value=0.5, max_value=600),
    st.floats(min_value=0, max_value=0.99),
)
def test_chunk_spans_cover_the_video_once_in_order(
    duration: float, chunk_s: float, overlap_share: float
) -> None:
    overlap = chunk_s * overlap_share
    if chunk_count(duration, chunk_s, overlap) > 20_000:
        return
    spans = chunk_spans(duration, chunk_s, overlap)
    assert len(spans) == chunk_count(duration, chunk_s, overlap)
    assert spans[0][0] == 0.0
    assert spans[-1][1] == pytest.approx(duration, abs=1e-5)
    for (start, end), (next_start, _) in itertools.pairwise(spans):
        assert start < next_start <= end + 1e-6  # each starts inside the one before: no gap


@FAST
@given(st.text(max_size=40))
def test_decimal_takes_ascii_digits_only(text: str) -> None:
    value = decimal(text)
    if value is None:
        assert not (text.isascii() and text.isdigit() and 0 < len(text) <= MAX_DIGITS)
    else:
        assert 0 <= value < 10**MAX_DIGITS
        assert text.isascii()
        assert text.isdigit()
        assert int(text) == value


@FAST
@given(st.integers(min_value=0, max_value=10**MAX_DIGITS - 1))
def test_decimal_reads_back_every_number_it_can_hold(number: int) -> None:
    assert decimal(str(number)) == number


@FAST
@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_json_bodies_parse_or_are_a_400(body: bytes) -> None:
    try:
        json_body.loads(body, 8, what="the body", param=None, code="invalid_json")
    except VidserveError as exc:
        _client_error(exc)


chat_bodies = st.fixed_dictionaries(
    {
        "model": st.sampled_from([MODEL, "other"]),
        "messages": st.lists(
            st.fixed_dictionaries(
                {
                    "role": st.sampled_from(["user", "system", "assistant", "tool"]),
                    "content": json_values,
                }
            ),
            max_size=3,
        ),
    },
    optional={
        "max_tokens": json_values,
        "temperature": json_values,
        "top_p": json_values,
        "seed": st.integers(min_value=-(2**70), max_value=2**70) | json_values,
        "stop": json_values,
        "response_format": json_values,
        "video_options": json_values,
        "n": json_values,
    },
)


@FAST
@given(chat_bodies)
def test_chat_bodies_are_a_plan_or_a_4xx(body: dict[str, Any]) -> None:
    try:
        plan = parse_chat(json.dumps(body).encode(), ARGS, [MODEL])
    except VidserveError as exc:
        _client_error(exc)
        return
    seed = plan.params.seed
    assert seed is None or -(2**63) <= seed < 2**63  # what the engine takes
    assert 1 <= plan.params.max_tokens <= ARGS.generation.max_tokens_limit


def test_search_queries_of_any_text_answer_a_list(tmp_path: Path) -> None:
    """On the real SQLite store (FTS5): any words, operators or quotes are searched as text."""
    store = open_store(StoreSettings(url=f"sqlite:///{tmp_path / 'j.db'}"), JobsSettings())
    now = time.time()
    store.create_job(JobRecord("j", "o", "captions", JobState.QUEUED, "v", "/v", {}, now, now))

    @FAST
    @given(st.text(max_size=60))
    def search(query: str) -> None:
        hits = store.search("o", query, 10)
        assert isinstance(hits, list)

    search()
    store.close()
