"""A chat question about a job's video: the best-matching chunk's frames, every caption as
context (a real SQLite store)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.config.settings import JobsSettings, StoreSettings
from deploy.core.errors import NotFound, UnprocessableInput
from deploy.core.jobs import JobState
from deploy.core.messages import Role
from deploy.jobs.ask import job_context
from deploy.jobs.records import ChunkRecord, JobRecord
from deploy.jobs.store import Store, open_store

CAPTIONS = ["a kitchen with a kettle", "a dog runs on a beach", "people sing in a choir"]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(StoreSettings(url=f"sqlite:///{tmp_path / 'j.db'}"), JobsSettings())
    spec = {"task": "captions", "chunk_s": 30.0, "overlap_s": 0.0, "frames_per_chunk": 3}
    opened.create_job(
        JobRecord("j1", "alice", "captions", JobState.QUEUED, "day.mp4", "/data/day.mp4", spec,
                  1.0, 1.0)
    )  # fmt: skip
    yield opened
    opened.close()


def _caption_all(store: Store) -> None:
    for index, text in enumerate(CAPTIONS):
        chunk = ChunkRecord("j1", index, index * 30.0, index * 30.0 + 30, text, tokens=6)
        store.record_chunk(chunk, "alice")


def test_the_frames_of_the_best_matching_chunk_and_every_caption(store: Store) -> None:
    _caption_all(store)
    context = job_context(store, "j1", "alice", "Where does the dog run?", 10_000)
    assert context.media.file == "/data/day.mp4"
    assert context.span == (30.0, 60.0)
    sampling = context.sampling
    assert (sampling.start_s, sampling.num_frames) == (30.0, 3)
    assert (
        59.99 < (sampling.end_s or 0) < 60.0
    )  # [start, end): the frame at 60 s is the next chunk's
    assert context.captions.role is Role.SYSTEM
    for text in CAPTIONS:
        assert text in context.captions.text
    assert "[00:00:30-00:01:00]" in context.captions.text


def test_no_match_falls_back_to_the_first_chunk_and_long_context_is_cut(store: Store) -> None:
    _caption_all(store)
    context = job_context(store, "j1", "alice", "zzz", 60)
    assert context.span == (0.0, 30.0)
    assert "more lines left out" in context.captions.text


def test_unknown_other_owners_and_uncaptioned_jobs_are_refused(store: Store) -> None:
    with pytest.raises(NotFound):
        job_context(store, "j1", "mallory", "dog", 1000)
    with pytest.raises(UnprocessableInput, match="no captioned chunk yet"):
        job_context(store, "j1", "alice", "dog", 1000)


def test_a_question_about_a_job_whose_video_was_deleted_is_410(store: Store) -> None:
    from deploy.core.errors import Gone

    _caption_all(store)
    store.media_removed("j1")
    with pytest.raises(Gone) as gone:
        job_context(store, "j1", "alice", "ball", 10_000)
    assert gone.value.code == "job_media_deleted"
