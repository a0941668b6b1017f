"""The jobs API's HTTP side on the ingress's real Starlette app (no Ray): the jobs database
going away mid-run is a JSON 503 with Retry-After, and answers again once it is back, nothing
lost; the runner starts and stops with the app."""

from __future__ import annotations

from pathlib import Path

from deploy.config.settings import AppArgs, JobsSettings
from tests.support.jobs_app import ScriptedWork, jobs_client
from tests.support.postgres import PostgresServer
from tests.support.videos import write_h264


def test_a_lost_database_is_503_then_answers_again(
    postgres: PostgresServer, postgres_url: str, tmp_path: Path
) -> None:
    video = write_h264(tmp_path / "v.mp4", 20, 10.0, (64, 48))
    args = AppArgs(jobs=JobsSettings(data_dir=tmp_path, lease_s=1.0))
    work = ScriptedWork(duration_s=90.0)
    with jobs_client(args, postgres_url, work) as client:
        with video.open("rb") as handle:
            created = client.post(
                "/v1/video/jobs", files={"file": ("v.mp4", handle)}, data={"task": "captions"}
            )
        assert created.status_code == 202, created.text
        path = created.headers["location"]
        postgres.stop()
        try:
            lost = client.get(path)
            assert lost.status_code == 503
            assert lost.json()["error"]["code"] == "store_unavailable"
            assert lost.headers["retry-after"] == "2"
        finally:
            postgres.start()
        found = client.get(path)
        assert found.status_code == 200
        assert found.json()["id"] == created.json()["id"]


def test_the_runner_runs_with_the_app(tmp_path: Path) -> None:
    video = write_h264(tmp_path / "v.mp4", 20, 10.0, (64, 48))
    args = AppArgs(jobs=JobsSettings(data_dir=tmp_path))
    work = ScriptedWork(duration_s=65.0)
    with jobs_client(args, f"sqlite:///{tmp_path / 'j.db'}", work) as client:
        with video.open("rb") as handle:
            created = client.post(
                "/v1/video/jobs", files={"file": ("v.mp4", handle)}, data={"task": "captions"}
            )
        assert created.status_code == 202
        with client.stream("GET", f"{created.headers['location']}/events") as events:
            lines = [line for line in events.iter_lines() if line.startswith("event: ")]
    assert lines.count("event: chunk") == 3
    assert lines[-2:] == ["event: result", "event: done"]
