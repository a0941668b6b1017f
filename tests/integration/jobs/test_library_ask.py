"""Questions over several videos (deploy/jobs/library_ask.py) on both databases with the real
embedding model: the best-matching chunks of each video as the context, each excerpt with the
citation [video, mm:ss-mm:ss] the model is told to use, the sources returned; unknown jobs 404,
nothing found 422."""

from __future__ import annotations

import pytest

from deploy.config.search_settings import SearchSettings
from deploy.core.errors import NotFound, UnprocessableInput
from deploy.core.messages import Role
from deploy.jobs.library import Library
from deploy.jobs.library_ask import INSTRUCTION, library_context
from deploy.jobs.store import Store
from tests.support.library import EncoderHandle, fill, synchronous

SETTINGS = SearchSettings(per_video=2, max_videos=2)


def _library(store: Store) -> Library:
    return Library(store, EncoderHandle(), SETTINGS)  # type: ignore[arg-type]


@synchronous
async def test_named_videos_answer_from_their_best_chunks_with_citations(
    vector_store: Store,
) -> None:
    filled = fill(vector_store)
    library = _library(vector_store)
    await library.index()
    named = (filled.job_ids["depot.mp4"], filled.job_ids["kitchen.mp4"])
    found = await library_context(
        vector_store, library, SETTINGS, "alice", "Which forklift carries pallets?",
        job_ids=named,
    )  # fmt: skip
    assert found.context.role is Role.SYSTEM
    assert found.context.text.startswith(INSTRUCTION)
    depot = [s for s in found.sources if s.video == "depot.mp4"]
    kitchen = [s for s in found.sources if s.video == "kitchen.mp4"]
    assert len(depot) == len(kitchen) == SETTINGS.per_video  # each named video, its best chunks
    assert {(s.start_s, s.end_s) for s in depot} >= {(60.0, 90.0)}  # FL-7734 carries pallets
    assert [s.start_s for s in depot] == sorted(s.start_s for s in depot)  # in the video's order
    cited = "[depot.mp4, 01:00-01:30] Forklift FL-7734 carries pallets into the warehouse."
    assert cited in found.context.text
    assert all(s.citation in found.context.text for s in found.sources)
    assert {s.job_id for s in found.sources} == set(named)


@synchronous
async def test_search_picks_the_videos_and_what_was_said_is_in_the_excerpts(
    vector_store: Store,
) -> None:
    fill(vector_store)
    library = _library(vector_store)
    await library.index()
    found = await library_context(
        vector_store, library, SETTINGS, "alice", "When does the meeting begin?", search=None
    )
    videos = list(dict.fromkeys(s.video for s in found.sources))
    assert videos[0] == "meeting.mp4"
    assert len(videos) <= SETTINGS.max_videos
    assert "said: The meeting starts at three in the afternoon." in found.context.text
    assert "[00:02-00:05]" not in found.context.text  # the transcript's own stamps are dropped


@synchronous
async def test_unknown_or_another_keys_jobs_are_404_and_nothing_found_is_422(
    vector_store: Store,
) -> None:
    filled = fill(vector_store)
    library = _library(vector_store)
    await library.index()
    with pytest.raises(NotFound):
        await library_context(vector_store, library, SETTINGS, "alice", "q", job_ids=("job_x",))
    with pytest.raises(NotFound):  # alice's job, asked by bob
        await library_context(
            vector_store, library, SETTINGS, "bob", "q", job_ids=(filled.job_ids["depot.mp4"],)
        )
    with pytest.raises(UnprocessableInput) as refused:
        await library_context(vector_store, library, SETTINGS, "bob", "forklift", search="forklift")
    assert refused.value.code == "nothing_found"
