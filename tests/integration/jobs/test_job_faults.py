"""Jobs that must not wedge the ingress or starve other keys (issue 26).

Before: `chunk_s=2, overlap_s=1.9999999999999998` was accepted and planning looped forever on
the event loop (a step of 2e-16 s: `start += step` stops moving); the job stayed queued, so every
restart claimed it again. A job that killed or stalled its runner was retried forever, and the
runner claimed the oldest job whoever owned it, so one key with many jobs starved the others.
The store is the real one (SQLite here and a real PostgreSQL server), the HTTP app the real one.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from deploy.config.settings import AppArgs, JobsSettings
from deploy.core.errors import InvalidRequest
from deploy.core.jobs import JobState
from deploy.jobs.job_runner import JobRunner
from deploy.jobs.plan import plan_chunks
from deploy.jobs.records import JobRecord
from deploy.jobs.spec import JobSpec, JobTask
from deploy.jobs.store import Store
from deploy.video.chunks import chunk_spans
from tests.support.jobs_app import ScriptedWork, jobs_client

NEAR_TWO = 1.9999999999999998  # chunk_s - this = 2.2e-16 s


def _in_a_thread(call: object, timeout_s: float = 5.0) -> object:
    """`call()`'s result, or a failure when it does not return within timeout_s."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = call()  # type: ignore[operator]
        except Exception as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout_s)
    assert not thread.is_alive(), "planning did not finish: it loops"
    return box.get("value", box.get("error"))


def test_planning_a_tiny_step_ends_at_once_with_too_many_chunks() -> None:
    outcome = _in_a_thread(lambda: plan_chunks(3600.0, 2.0, NEAR_TWO, max_chunks=2000))
    assert isinstance(outcome, InvalidRequest), outcome
    assert outcome.code == "too_many_chunks"


@pytest.mark.parametrize(
    ("duration", "chunk_s", "overlap_s"),
    [(305.0, 30.0, 0.0), (180.0, 2.0, 0.0), (100.0, 30.0, 10.0), (10.0, 30.0, 0.0),
     (60.0, 30.0, 0.0), (61.0, 30.0, 29.0), (0.5, 2.0, 1.0)],
)  # fmt: skip
def test_spans_computed_arithmetically_cover_the_video(
    duration: float, chunk_s: float, overlap_s: float
) -> None:
    spans = chunk_spans(duration, chunk_s, overlap_s)
    step = chunk_s - overlap_s
    assert spans[0][0] == 0.0
    assert spans[-1][1] == pytest.approx(duration)
    for i, (start, end) in enumerate(spans):
        assert start == pytest.approx(i * step)
        assert end == pytest.approx(min(start + chunk_s, duration))
    assert len(spans) == 1 or spans[-2][1] < duration  # no chunk past the end


def test_a_job_step_under_the_minimum_is_refused_at_post(tmp_path: Path) -> None:
    args = AppArgs(jobs=JobsSettings(data_dir=tmp_path))
    with jobs_client(
        args, f"sqlite:///{tmp_path / 'j.db'}", ScriptedWork(duration_s=60.0)
    ) as client:
        response = client.post(
            "/v1/video/jobs",
            json={"task": "captions", "url": "http://example.com/v.mp4", "chunk_s": 2,
                  "overlap_s": NEAR_TWO},
        )  # fmt: skip
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "overlap_s"
    assert "jobs.min_chunk_step_s" in error["message"]


def _queued(store: Store, job_id: str, owner: str, at: float) -> None:
    spec = JobSpec(task=JobTask.CAPTIONS, chunk_s=30.0, overlap_s=0.0, frames_per_chunk=2)
    store.create_job(
        JobRecord(job_id, owner, "captions", JobState.QUEUED, "v.mp4", "/v.mp4",
                  spec.model_dump(mode="json"), at, at)
    )  # fmt: skip


def test_a_job_that_keeps_killing_its_runner_is_failed_with_the_reason(store: Store) -> None:
    _queued(store, "poison", "alice", time.time())
    max_claims = 3
    for attempt in range(max_claims):
        # Claimed, then its replica dies (its lease runs out without a release).
        assert store.claim(f"replica-{attempt}", 0.01, 1, max_claims=max_claims) == ["poison"]
        time.sleep(0.03)
    assert store.claim("replica-last", 0.01, 1, max_claims=max_claims) == []
    job = store.get_job("poison")
    assert job is not None
    assert job.state is JobState.FAILED
    assert job.error is not None
    assert job.error["code"] == "job_poisoned"
    assert "jobs.max_job_claims" in job.error["message"]


def test_a_clean_hand_back_is_not_counted_against_the_job(store: Store) -> None:
    _queued(store, "fine", "alice", time.time())
    for attempt in range(5):  # replicas stopping cleanly (a redeploy) hand the lease back
        assert store.claim(f"replica-{attempt}", 30, 1, max_claims=2) == ["fine"]
        store.release(f"replica-{attempt}", ["fine"])
    job = store.get_job("fine")
    assert job is not None
    assert job.state is JobState.QUEUED


def test_claims_take_turns_between_owners(store: Store) -> None:
    now = time.time()
    for n in range(10):
        _queued(store, f"a{n}", "alice", now - 100 + n)  # alice's are all older
    _queued(store, "b0", "bob", now)
    _queued(store, "c0", "carol", now + 1)
    first = store.claim("replica-1", 30, 3)
    assert sorted(first) == ["a0", "b0", "c0"], first
    assert store.claim("replica-1", 30, 1) == ["a1"]  # a tie: the oldest job goes first
    # Whoever runs fewest goes first: bob (1 running) before alice (2), her jobs being older.
    _queued(store, "b1", "bob", now + 2)
    assert store.claim("replica-1", 30, 1) == ["b1"]
    assert store.claim("replica-1", 30, 1) == ["a2"]


def test_the_runner_plans_off_the_event_loop(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plan that takes long must not stop the loop (health checks, other requests)."""
    import deploy.jobs.job_runner as runner_module

    def slow_plan(*args: object, **kwargs: object) -> list[tuple[float, float]]:
        time.sleep(0.5)
        return [(0.0, 30.0)]

    monkeypatch.setattr(runner_module, "plan_chunks", slow_plan)
    _queued(store, "j1", "alice", time.time())

    async def go() -> float:
        runner = JobRunner(store, ScriptedWork(duration_s=30.0), JobsSettings(), max_model_len=4096)
        await runner.tick()
        longest = 0.0
        last = time.monotonic()
        for _ in range(40):  # the loop keeps turning while the plan is made
            await asyncio.sleep(0.02)
            now = time.monotonic()
            longest, last = max(longest, now - last), now
        await runner.stop()
        return longest

    assert asyncio.run(go()) < 0.3
