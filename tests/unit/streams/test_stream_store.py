"""The streams' store on a real SQLite file: leases (one replica a stream, taken over when its
replica dies), windows kept once as chunks of the stream's searchable library record, alerts
and their deliveries; the jobs runner never takes a stream's record for a job."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from deploy.config.settings import JobsSettings, StoreSettings
from deploy.core.jobs import JobState
from deploy.jobs.records import ChunkRecord
from deploy.jobs.store import open_store
from deploy.streams.stream_spec import StreamSpec
from deploy.streams.stream_store import AlertRecord, StreamState, StreamStore


@pytest.fixture
def store(tmp_path: Path) -> StreamStore:
    return StreamStore(open_store(StoreSettings(), JobsSettings(data_dir=tmp_path)))


def _window(stream_id: str, index: int, text: str | None = "a red car passes") -> ChunkRecord:
    return ChunkRecord(stream_id, index, index * 10.0, index * 10.0 + 10, text)


def test_one_replica_holds_a_stream_until_its_lease_runs_out(store: StreamStore) -> None:
    store.create("s1", "key-a", StreamSpec(url="rtsp://cam/1"))
    assert store.claim("replica-a", lease_s=0.3, limit=5) == ["s1"]
    assert store.claim("replica-b", lease_s=0.3, limit=5) == []
    assert store.renew("replica-a", ["s1"], lease_s=0.3) == []
    time.sleep(0.4)  # replica-a died: it renews no more
    assert store.claim("replica-b", lease_s=5, limit=5) == ["s1"]
    assert store.renew("replica-a", ["s1"], lease_s=5) == ["s1"]  # lost
    assert store.set_state("s1", "replica-b", StreamState.LIVE, reconnected=True)
    assert not store.set_state("s1", "replica-a", StreamState.LIVE)
    record = store.get("s1")
    assert record is not None
    assert (record.state, record.reconnects) == (StreamState.LIVE, 1)


def test_the_jobs_runner_never_claims_a_streams_record(store: StreamStore) -> None:
    store.create("s1", "key-a", StreamSpec(url="rtsp://cam/1"))
    assert store.jobs.claim("job-runner", lease_s=30, limit=10) == []
    assert store.jobs.usage("key-a") == (0, 0)  # nor counts it against the key's jobs


def test_a_window_is_kept_once_searchable_with_its_alerts(store: StreamStore) -> None:
    store.create("s1", "key-a", StreamSpec(url="rtsp://cam/1", name="loading dock"))
    stream = store.get("s1")
    assert stream is not None
    alert = AlertRecord("alert-1", "s1", "key-a", "truck", 3, 30.0, 40.0, time.time(), "pending")
    kept = store.record_window(
        stream, _window("s1", 3), lag_s=1.5, rules_state="{}", alerts=[alert]
    )
    assert kept
    assert not store.record_window(stream, _window("s1", 3), lag_s=9, rules_state="{}")
    after = store.get("s1")
    assert after is not None
    assert (after.windows, after.next_window, after.lag_s) == (1, 4, 1.5)
    hits = store.jobs.search("key-a", "red car", 5)
    assert [(h.job_id, h.video, h.start_s) for h in hits] == [("s1", "loading dock", 30.0)]
    assert store.jobs.search("key-b", "red car", 5) == []
    assert [a.id for a in store.due_deliveries(["s1"])] == ["alert-1"]
    store.delivery("alert-1", "pending", "HTTP 500", time.time() + 60)
    assert store.due_deliveries(["s1"]) == []  # not before its next attempt
    store.delivery("alert-1", "delivered", None, None)
    (delivered,) = store.alerts("s1")
    assert (delivered.delivery, delivered.attempts, delivered.rule) == ("delivered", 2, "truck")


def test_stopping_keeps_the_windows_and_deleting_the_record_removes_all(
    store: StreamStore,
) -> None:
    store.create("s1", "key-a", StreamSpec(url="rtsp://cam/1"))
    store.claim("replica-a", lease_s=30, limit=1)
    stream = store.get("s1")
    assert stream is not None
    store.record_window(stream, _window("s1", 0), lag_s=0.1, rules_state=None)
    assert store.stop("s1", "key-b") is None or store.get("s1").state.active  # type: ignore[union-attr]
    stopped = store.stop("s1", "key-a")
    assert stopped is not None
    assert stopped.state is StreamState.STOPPED
    assert store.renew("replica-a", ["s1"], lease_s=30) == ["s1"]  # its decoder lets go
    job = store.jobs.get_job("s1")
    assert job is not None
    assert job.state is JobState.SUCCEEDED
    assert job.chunks_done == 1
    assert store.jobs.delete_job("s1", "key-a")
    assert store.get("s1") is None
    assert store.windows("s1") == []
