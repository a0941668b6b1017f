"""The job runner on a real store (SQLite) with a scripted engine: chunks bounded in flight,
retries, failures kept, resume without recomputing, cancel, and a replica that dies."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.config.settings import JobsSettings, StoreSettings
from deploy.core.errors import ServiceUnavailable, UnprocessableInput, VidserveError
from deploy.core.jobs import JobState
from deploy.jobs.job_runner import JobRunner
from deploy.jobs.records import ChunkRecord, JobRecord
from deploy.jobs.spec import JobSpec, JobTask
from deploy.jobs.store import Store, open_store
from tests.support.jobs_app import ScriptedWork

SETTINGS = JobsSettings(max_chunks_in_flight=2, retry_backoff_s=0.0, lease_s=30)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(StoreSettings(url=f"sqlite:///{tmp_path / 'j.db'}"), JobsSettings())
    yield opened
    opened.close()


def _job(store: Store, task: JobTask = JobTask.SUMMARIZE, job_id: str = "j1") -> None:
    spec = JobSpec(task=task, chunk_s=30.0, overlap_s=0.0, frames_per_chunk=4)
    now = time.time()
    store.create_job(
        JobRecord(job_id, "alice", task.value, JobState.QUEUED, "v.mp4", "/v.mp4",
                  spec.model_dump(mode="json"), now, now)
    )  # fmt: skip


def _run(store: Store, work: ScriptedWork, settings: JobsSettings = SETTINGS) -> JobRecord:
    async def go() -> JobRecord:
        runner = JobRunner(store, work, settings, max_model_len=4096)
        await runner.tick()
        await asyncio.gather(*[t for t in asyncio.all_tasks() if t.get_name().startswith("job ")])
        found = store.get_job("j1")
        assert found is not None
        return found

    return asyncio.run(go())


def test_a_summary_job_captions_every_chunk_once_two_at_a_time(store: Store) -> None:
    _job(store)
    work = ScriptedWork(duration_s=305.0)
    job = _run(store, work)
    assert job.state is JobState.SUCCEEDED
    assert (job.chunks_total, job.chunks_done, job.chunks_failed) == (11, 11, 0)
    assert work.captions == Counter(dict.fromkeys(range(11), 1))
    assert work.peak == 2  # jobs.max_chunks_in_flight
    assert job.result is not None
    assert job.result["summary"] == "summary of 11 lines"
    assert job.result["failed_chunks"] == []
    assert "[00:05:00-00:05:05] scene 10 shows a red ball" in work.prompts[0]


def test_chapters_cover_the_video_and_are_searchable(store: Store) -> None:
    _job(store, JobTask.CHAPTERS)
    job = _run(store, ScriptedWork(duration_s=250.0))
    assert job.result is not None
    chapters = job.result["chapters"]
    assert [(c["start_s"], c["end_s"]) for c in chapters] == [
        (0.0, 120.0),
        (120.0, 240.0),
        (240.0, 250.0),
    ]
    assert chapters[0]["title"] == "A ball"
    kinds = Counter(hit.kind for hit in store.search("alice", "ball", 50))
    assert kinds == {"caption": 9, "chapter": 3}


def test_server_errors_are_retried_and_client_errors_kept(store: Store) -> None:
    def fail(index: int, attempt: int) -> VidserveError | None:
        if index == 1 and attempt < 3:
            return ServiceUnavailable("vLLM restarting", code="vllm_unavailable")
        if index == 2:
            return UnprocessableInput("the stretch is corrupt", code="corrupt_media")
        return None

    _job(store, JobTask.CAPTIONS)
    work = ScriptedWork(duration_s=90.0, fail=fail)
    job = _run(store, work, SETTINGS.model_copy(update={"chunk_attempts": 3}))
    assert work.captions == Counter({0: 1, 1: 3, 2: 1})
    assert job.state is JobState.SUCCEEDED
    assert job.result is not None
    assert [c["start_s"] for c in job.result["captions"]] == [0.0, 30.0]
    (failed,) = job.result["failed_chunks"]
    assert (failed["index"], failed["error"]["code"]) == (2, "corrupt_media")


def test_a_job_whose_every_chunk_fails_fails_and_says_why(store: Store) -> None:
    _job(store)
    work = ScriptedWork(60.0, fail=lambda i, a: UnprocessableInput("bad", code="corrupt_media"))
    job = _run(store, work)
    assert job.state is JobState.FAILED
    assert job.error is not None
    assert job.error["code"] == "all_chunks_failed"
    assert len(job.error["failed_chunks"]) == 2


def test_a_resumed_job_computes_only_the_missing_chunks(store: Store) -> None:
    _job(store)
    for index in (0, 1, 3):  # done before "the replica died"
        store.record_chunk(
            ChunkRecord("j1", index, index * 30.0, index * 30.0 + 30, "old", tokens=1), "alice"
        )
    work = ScriptedWork(duration_s=150.0)
    job = _run(store, work)
    assert work.captions == Counter({2: 1, 4: 1})
    assert (job.state, job.chunks_done) == (JobState.SUCCEEDED, 5)


def test_cancel_stops_the_chunks_in_flight(store: Store) -> None:
    _job(store)
    work = ScriptedWork(duration_s=3000.0, delay_s=0.2)

    async def go() -> None:
        runner = JobRunner(store, work, SETTINGS, max_model_len=4096)
        await runner.tick()
        await asyncio.wait_for(work.started.wait(), 5)
        assert store.cancel("j1", "alice") is not None
        assert runner.cancel("j1")
        await asyncio.sleep(0.05)
        assert work.in_flight == 0  # the caption calls were cancelled with the job
        assert runner.running == []

    asyncio.run(go())
    job = store.get_job("j1")
    assert job is not None
    assert job.state is JobState.CANCELLED
    assert job.chunks_done < 5


def test_a_dead_replicas_job_is_taken_over_when_its_lease_runs_out(store: Store) -> None:
    _job(store)
    assert store.claim("dead-replica", lease_s=0.05, limit=1) == ["j1"]
    work = ScriptedWork(duration_s=60.0)

    async def go() -> list[str]:
        runner = JobRunner(store, work, SETTINGS, max_model_len=4096)
        await runner.tick()
        held = runner.running
        await asyncio.sleep(0.1)
        await runner.tick()
        await asyncio.gather(*[t for t in asyncio.all_tasks() if t.get_name().startswith("job ")])
        return held

    assert asyncio.run(go()) == []  # the lease still held at first
    job = store.get_job("j1")
    assert job is not None
    assert job.state is JobState.SUCCEEDED


def test_each_chunk_keeps_what_was_said_and_search_finds_it(store: Store) -> None:
    _job(store, JobTask.CAPTIONS)
    job = _run(store, ScriptedWork(duration_s=65.0, speech=True))
    assert job.state is JobState.SUCCEEDED
    chunks = store.chunks("j1")
    assert [c.transcript for c in chunks] == [
        f"[00:00-00:02] the driver says refuel before chunk {i + 1}" for i in range(3)
    ]
    # A word only said, never in a caption: found as speech, with the chunk's time range.
    hits = store.search("alice", "refuel", 10)
    assert {hit.kind for hit in hits} == {"speech"}
    assert sorted((hit.start_s, hit.end_s) for hit in hits) == [(0, 30), (30, 60), (60, 65)]
