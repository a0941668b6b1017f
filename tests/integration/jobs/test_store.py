"""The jobs store against real SQLite and a real PostgreSQL server: schema, jobs, chunks kept
once, leases, scoping by owner, full-text search, and a database that goes away."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from deploy.config.settings import JobsSettings, StoreSettings
from deploy.core.jobs import JobState
from deploy.jobs.database import redact
from deploy.jobs.records import ChunkRecord, JobRecord, StoreError, StoreUnavailable
from deploy.jobs.schema import MIGRATIONS, SCHEMA_VERSION
from deploy.jobs.store import Store, open_store
from tests.support.postgres import PostgresServer


def job(job_id: str = "j1", owner: str = "alice", created_at: float | None = None) -> JobRecord:
    now = time.time() if created_at is None else created_at
    return JobRecord(
        id=job_id,
        owner=owner,
        task="summarize",
        state=JobState.QUEUED,
        video="meeting.mp4",
        source="/data/meeting.mp4",
        spec={"task": "summarize", "chunk_s": 30.0},
        created_at=now,
        updated_at=now,
    )


def chunk(index: int, text: str | None = "a caption", job_id: str = "j1") -> ChunkRecord:
    error = None if text is not None else {"code": "engine_error", "message": "boom"}
    return ChunkRecord(job_id, index, index * 30.0, index * 30.0 + 30.0, text, error, attempts=2)


def test_schema_is_created_once_and_versioned(store: Store, store_url: str, tmp_path: Path) -> None:
    assert store.version() == SCHEMA_VERSION == MIGRATIONS[-1][0]
    again = open_store(StoreSettings(url=store_url), JobsSettings(data_dir=tmp_path))
    assert again.migrate() == SCHEMA_VERSION  # a second start migrates nothing and fails nothing
    again.close()


def test_a_job_round_trips_with_its_progress(store: Store) -> None:
    store.create_job(job())
    store.set_plan("j1", 95.0, 4)
    assert store.record_chunk(chunk(0), "alice")
    assert store.record_chunk(chunk(2, None), "alice")
    found = store.get_job("j1", "alice")
    assert found is not None
    assert (found.state, found.duration_s, found.chunks_total) == (JobState.RUNNING, 95.0, 4)
    assert (found.chunks_done, found.chunks_failed) == (1, 1)
    assert found.spec == {"task": "summarize", "chunk_s": 30.0}
    assert [c.index for c in store.chunks("j1")] == [0, 2]
    assert [c.index for c in store.chunks("j1", after=0)] == [2]
    assert store.chunks("j1")[1].error == {"code": "engine_error", "message": "boom"}


def test_each_chunk_is_kept_once(store: Store) -> None:
    store.create_job(job())
    assert store.record_chunk(chunk(0, "first"), "alice")
    assert not store.record_chunk(chunk(0, "second"), "alice")
    assert [c.text for c in store.chunks("j1")] == ["first"]
    assert [h.text for h in store.search("alice", "second", 10)] == []


def test_another_owner_sees_nothing(store: Store) -> None:
    store.create_job(job())
    store.record_chunk(chunk(0, "a red bicycle"), "alice")
    assert store.get_job("j1", "mallory") is None
    assert store.list_jobs("mallory", 10) == []
    assert store.search("mallory", "bicycle", 10) == []
    assert store.cancel("j1", "mallory") is None
    assert store.state_of("j1") is JobState.QUEUED


def test_listing_is_newest_first_and_paged(store: Store) -> None:
    for n in range(5):
        store.create_job(job(f"j{n}", created_at=1000.0 + n))
    first = store.list_jobs("alice", 2)
    assert [j.id for j in first] == ["j4", "j3"]
    after = store.list_jobs("alice", 10, before=(first[-1].created_at, first[-1].id))
    assert [j.id for j in after] == ["j2", "j1", "j0"]


def test_finish_keeps_the_first_final_state(store: Store) -> None:
    store.create_job(job())
    assert store.cancel("j1", "alice") is not None
    done = store.finish("j1", JobState.SUCCEEDED, result={"summary": "late"})
    assert not done
    found = store.get_job("j1")
    assert found is not None
    assert (found.state, found.result) == (JobState.CANCELLED, None)


def test_search_ranks_captions_and_chapters(store: Store) -> None:
    store.create_job(job())
    store.record_chunk(chunk(0, "a dog runs on the beach"), "alice")
    store.record_chunk(chunk(1, "people talk in a kitchen"), "alice")
    store.record_chunk(chunk(2, "the dog sleeps; the dog dreams of dogs"), "alice")
    store.finish(
        "j1", JobState.SUCCEEDED, result={"summary": "s"}, chapters=[(0.0, 60.0, "Kitchen talk")]
    )
    hits = store.search("alice", "dog", 10)
    assert [h.start_s for h in hits] == [60.0, 0.0]  # more mentions rank first
    assert hits[0].score > hits[1].score > 0
    assert (hits[0].job_id, hits[0].video, hits[0].kind) == ("j1", "meeting.mp4", "caption")
    chapter = store.search("alice", "kitchen", 10)
    assert {h.kind for h in chapter} == {"caption", "chapter"}
    # operators and quotes in the query are words, not syntax
    assert store.search("alice", 'dog" OR NEAR(', 10)[0].start_s == 60.0
    assert store.search("alice", "   ", 10) == []


def test_leases_hand_a_dead_replicas_job_to_another(store: Store) -> None:
    store.create_job(job("a", created_at=1.0))
    store.create_job(job("b", created_at=2.0))
    assert store.claim("replica-1", lease_s=60, limit=1) == ["a"]
    assert store.claim("replica-2", lease_s=60, limit=5) == ["b"]  # a is held
    assert store.renew("replica-1", ["a", "b"], lease_s=60) == ["b"]  # b is not replica-1's
    assert store.claim("replica-2", lease_s=0.05, limit=5) == []
    store.release("replica-1", ["a"])
    assert store.claim("replica-2", lease_s=0.05, limit=5) == ["a"]
    time.sleep(0.1)  # replica-2 "died": its short lease runs out
    assert store.claim("replica-3", lease_s=60, limit=5) == ["a"]  # b: replica-2's lease holds
    assert store.renew("replica-3", ["a"], lease_s=60) == []
    store.finish("a", JobState.SUCCEEDED, result={})
    assert store.renew("replica-3", ["a"], lease_s=60) == ["a"]  # finished: the lease is gone


def test_counts_by_state(store: Store) -> None:
    store.create_job(job("a"))
    store.create_job(job("b"))
    store.finish("b", JobState.FAILED, error={"code": "x", "message": "y"})
    assert store.count_by_state() == {"queued": 1, "failed": 1}


def test_unreachable_postgres_at_start_says_which_and_what_to_do(tmp_path: Path) -> None:
    from tests.support.ports import free_port

    url = f"postgresql://vidserve:s3cret@127.0.0.1:{free_port()}/jobs"
    with pytest.raises(StoreError) as raised:
        open_store(StoreSettings(url=url, connect_timeout_s=1), JobsSettings(data_dir=tmp_path))
    message = str(raised.value)
    assert "postgresql://vidserve:***@127.0.0.1" in message
    assert "s3cret" not in message
    assert "VIDSERVE_STORE_URL" in message


def test_unwritable_sqlite_place_says_what_to_set(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match=r"jobs.data_dir or store.url"):
        open_store(StoreSettings(url=f"sqlite:///{blocker}/sub/jobs.db"), JobsSettings())


def test_a_database_lost_mid_run_is_503_then_works_again(
    postgres: PostgresServer, postgres_url: str, tmp_path: Path
) -> None:
    store = open_store(StoreSettings(url=postgres_url), JobsSettings(data_dir=tmp_path))
    store.create_job(job())
    postgres.stop()
    try:
        with pytest.raises(StoreUnavailable) as raised:
            store.record_chunk(chunk(0), "alice")
        assert raised.value.status_code == 503
        assert raised.value.code == "store_unavailable"
    finally:
        postgres.start()
    assert store.record_chunk(chunk(0), "alice")  # reconnected; nothing written twice
    assert [c.index for c in store.chunks("j1")] == [0]
    store.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    open_store(StoreSettings(url=f"sqlite:///{path}"), JobsSettings()).close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="upgrade vidserve"):
        open_store(StoreSettings(url=f"sqlite:///{path}"), JobsSettings())


def test_redact_hides_the_password() -> None:
    assert redact("postgresql://u:p@h:5/d") == "postgresql://u:***@h:5/d"
    assert redact("postgresql://h/d") == "postgresql://h/d"
