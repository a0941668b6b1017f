"""Stored data has a lifecycle (issue 26). Before: DELETE of a finished job answered 200 but its
uploaded video stayed on disk; uploads and downloads were kept forever with no quota, and a
full disk failed the database for everyone.

The real Starlette app with the jobs API, a real SQLite store, real files; the engine work is
scripted (ScriptedWork). Downloads come from a real HTTP server on loopback (pytest-httpserver).
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from starlette.testclient import TestClient

from deploy.config.settings import AppArgs, JobsSettings, StoreSettings
from deploy.jobs.job_runner import JobRunner
from deploy.jobs.store import Store, open_store
from tests.support.jobs_app import ScriptedWork, finished, jobs_client
from tests.support.videos import write_h264


@pytest.fixture
def video(tmp_path: Path) -> bytes:
    return write_h264(tmp_path / "clip.mp4", 20, 10.0, (64, 48)).read_bytes()


def _args(tmp_path: Path, **jobs: Any) -> AppArgs:
    return AppArgs(jobs=JobsSettings(data_dir=tmp_path / "data", lease_s=1.0, **jobs))


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with jobs_client(
        _args(tmp_path), f"sqlite:///{tmp_path / 'j.db'}", ScriptedWork(1.0)
    ) as running:
        yield running


def _upload(client: TestClient, video: bytes, **headers: str) -> Any:
    return client.post(
        "/v1/video/jobs",
        files={"file": ("clip.mp4", video, "video/mp4")},
        data={"task": "captions"},
        headers=headers,
    )


def _media(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "data" / "media"
    return sorted(folder.iterdir()) if folder.exists() else []


def test_deleting_a_finished_job_removes_its_video_and_rows(
    client: TestClient, video: bytes, tmp_path: Path
) -> None:
    created = _upload(client, video)
    assert created.status_code == 202, created.text
    path = created.headers["location"]
    assert finished(client, path)["state"] == "succeeded"
    assert len(_media(tmp_path)) == 1
    deleted = client.delete(path)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"id": created.json()["id"], "object": "video.job", "deleted": True}
    assert _media(tmp_path) == []
    assert client.get(path).status_code == 404
    assert client.get("/v1/video/search?q=ball").json()["data"] == []  # its index is gone too


def test_cancelling_a_job_removes_its_video(tmp_path: Path, video: bytes) -> None:
    slow = ScriptedWork(60.0, delay_s=0.5)
    with jobs_client(_args(tmp_path), f"sqlite:///{tmp_path / 'j.db'}", slow) as client:
        created = _upload(client, video)
        path = created.headers["location"]
        cancelled = client.delete(path)
        assert cancelled.json()["state"] == "cancelled"
        assert _media(tmp_path) == []
        # A cancelled job is finished: a second DELETE removes it.
        assert client.delete(path).json()["deleted"] is True


def test_finished_jobs_media_is_removed_after_the_retention_time(
    tmp_path: Path, video: bytes
) -> None:
    args = _args(tmp_path, media_retention_s=0.5)
    with jobs_client(args, f"sqlite:///{tmp_path / 'j.db'}", ScriptedWork(1.0)) as client:
        path = _upload(client, video).headers["location"]
        assert finished(client, path)["state"] == "succeeded"
        deadline = time.monotonic() + 10
        while _media(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _media(tmp_path) == []
        job = client.get(path).json()  # the job and its result are kept
        assert job["state"] == "succeeded"
        assert job["media"] == {"bytes": 0, "deleted": True}


def test_quotas_per_key_are_429_with_a_message(tmp_path: Path, video: bytes) -> None:
    args = _args(tmp_path, max_active_jobs_per_key=1)
    slow = ScriptedWork(60.0, delay_s=0.5)
    with jobs_client(args, f"sqlite:///{tmp_path / 'j.db'}", slow) as client:
        assert _upload(client, video).status_code == 202
        refused = _upload(client, video)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "too_many_jobs"
        assert "jobs.max_active_jobs_per_key" in refused.json()["error"]["message"]
    args = _args(tmp_path / "b", max_media_bytes_per_key=len(video) + len(video) // 2)
    with jobs_client(args, f"sqlite:///{tmp_path / 'b.db'}", ScriptedWork(1.0)) as client:
        first = _upload(client, video)
        assert first.status_code == 202
        finished(client, first.headers["location"])
        refused = _upload(client, video)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "storage_quota_exceeded"
        assert "jobs.max_media_bytes_per_key" in refused.json()["error"]["message"]
        assert len(_media(tmp_path / "b")) == 1  # the refused upload is not kept
        client.delete(first.headers["location"])
        assert _upload(client, video).status_code == 202  # deleting frees the quota


def test_below_the_free_space_floor_new_jobs_get_507(tmp_path: Path, video: bytes) -> None:
    free = shutil.disk_usage(tmp_path).free
    args = _args(tmp_path, min_free_bytes=free + 2**30)
    with jobs_client(args, f"sqlite:///{tmp_path / 'j.db'}", ScriptedWork(1.0)) as client:
        refused = _upload(client, video)
        assert refused.status_code == 507, refused.text
        assert refused.json()["error"]["code"] == "insufficient_storage"
        assert "jobs.min_free_bytes" in refused.json()["error"]["message"]
        assert _media(tmp_path) == []
        assert client.get("/v1/video/jobs").status_code == 200  # the rest still answers


def test_a_job_url_download_streams_to_disk_under_the_quota(
    tmp_path: Path, video: bytes, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/v.mp4").respond_with_data(video, content_type="video/mp4")
    big = video + b"\0" * 200_000
    httpserver.expect_request("/big.mp4").respond_with_data(big, content_type="video/mp4")
    args = AppArgs(
        jobs=JobsSettings(data_dir=tmp_path / "data", max_media_bytes_per_key=len(video) + 1000),
        url_fetch={"allow_hosts": ["127.0.0.1", "localhost"]},
    )
    with jobs_client(args, f"sqlite:///{tmp_path / 'j.db'}", ScriptedWork(1.0)) as client:
        created = client.post(
            "/v1/video/jobs", json={"task": "captions", "url": httpserver.url_for("/v.mp4")}
        )
        assert created.status_code == 202, created.text
        (kept,) = _media(tmp_path)
        assert kept.read_bytes() == video
        assert created.json()["media"]["bytes"] == len(video)
        finished(client, created.headers["location"])
        client.delete(created.headers["location"])
        refused = client.post(
            "/v1/video/jobs", json={"task": "captions", "url": httpserver.url_for("/big.mp4")}
        )
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "storage_quota_exceeded"
        assert _media(tmp_path) == []  # the partial download is removed


def test_event_streams_per_key_are_capped(tmp_path: Path, video: bytes) -> None:
    """Real HTTP (uvicorn): a stream stays open while the next one is asked."""
    import httpx

    from tests.support.jobs_app import served

    args = _args(tmp_path, max_event_streams_per_key=1)
    with served(args, f"sqlite:///{tmp_path / 'j.db'}", ScriptedWork(60.0, delay_s=2.0)) as url:
        created = httpx.post(
            f"{url}/v1/video/jobs",
            files={"file": ("clip.mp4", video, "video/mp4")},
            data={"task": "captions"},
        )
        events = f"{url}{created.headers['location']}/events"
        with httpx.stream("GET", events, timeout=30) as first:
            assert first.status_code == 200
            second = httpx.get(events, timeout=30)
            assert second.status_code == 429, second.text
            assert second.json()["error"]["code"] == "too_many_event_streams"
            assert "jobs.max_event_streams_per_key" in second.text
        # The first one closed: its slot is back.
        with httpx.stream("GET", events, timeout=30) as again:
            assert again.status_code == 200


def test_expired_media_is_swept_by_the_runner(tmp_path: Path) -> None:
    """The runner's tick sweeps only media it owns (never a file:// source)."""
    settings = JobsSettings(data_dir=tmp_path, media_retention_s=0.0)
    store: Store = open_store(StoreSettings(url=f"sqlite:///{tmp_path / 'j.db'}"), settings)
    outside = tmp_path / "mine.mp4"
    outside.write_bytes(b"user's own file")
    from deploy.core.jobs import JobState
    from deploy.jobs.records import JobRecord
    from deploy.jobs.spec import JobSpec, JobTask

    spec = JobSpec(task=JobTask.CAPTIONS, chunk_s=30.0, overlap_s=0.0, frames_per_chunk=2)
    now = time.time()
    store.create_job(
        JobRecord("j1", "o", "captions", JobState.QUEUED, outside.as_uri(), str(outside),
                  spec.model_dump(mode="json"), now, now, media_bytes=0)
    )  # fmt: skip
    store.finish("j1", JobState.SUCCEEDED, result={})

    async def go() -> None:
        runner = JobRunner(store, ScriptedWork(1.0), settings, max_model_len=4096)
        await runner.tick()

    asyncio.run(go())
    assert outside.exists()
