"""The jobs API's HTTP side on the ingress's real Starlette app (no Ray): the jobs database
going away mid-run is a JSON 503 with Retry-After, and answers again once it is back, nothing
lost; the runner starts and stops with the app."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.testclient import TestClient

from deploy.api.auth import ApiKeys
from deploy.api.jobs_routes import JobRoutes
from deploy.config.settings import AppArgs, JobsSettings, StoreSettings
from deploy.ingress import build_http_app
from deploy.jobs.job_runner import JobRunner
from deploy.jobs.store import open_store
from deploy.serving.backends import BackendRouter
from deploy.serving.pipeline import AnalyzePipeline
from tests.support.asgi_server import uvicorn_server
from tests.support.handles import AnsweringHandle
from tests.support.postgres import PostgresServer
from tests.support.recorders import MetricsRecorder
from tests.support.videos import write_h264
from tests.unit.jobs.test_job_runner import ScriptedWork


async def _never() -> None:
    raise AssertionError("no extraction expected")


class _NoBackend:
    name = "ollama"

    async def ready(self, timeout_s: float) -> str:
        return "m"


def _starlette(args: AppArgs, store_url: str, work: ScriptedWork) -> Starlette:
    store = open_store(StoreSettings(url=store_url), args.jobs)
    runner = JobRunner(store, work, args.jobs, max_model_len=args.llm.max_model_len)
    router = BackendRouter([_NoBackend()], args.backends.circuit_breaker)  # type: ignore[list-item]
    pipeline = AnalyzePipeline(AnsweringHandle(_never), router, args)  # type: ignore[arg-type]
    return build_http_app(
        pipeline, args, ApiKeys([]), MetricsRecorder(), (runner, JobRoutes(store, runner, args))
    )


def _app(args: AppArgs, store_url: str, work: ScriptedWork) -> TestClient:
    return TestClient(_starlette(args, store_url, work))


@contextmanager
def served(args: AppArgs, store_url: str, work: ScriptedWork) -> Iterator[str]:
    """The app on a real uvicorn server on loopback (for streams held open); its URL."""
    with uvicorn_server(_starlette(args, store_url, work)) as port:
        yield f"http://127.0.0.1:{port}"


def test_a_lost_database_is_503_then_answers_again(
    postgres: PostgresServer, postgres_url: str, tmp_path: Path
) -> None:
    video = write_h264(tmp_path / "v.mp4", 20, 10.0, (64, 48))
    args = AppArgs(jobs=JobsSettings(data_dir=tmp_path, lease_s=1.0))
    work = ScriptedWork(duration_s=90.0)
    with _app(args, postgres_url, work) as client:
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
    with _app(args, f"sqlite:///{tmp_path / 'j.db'}", work) as client:
        with video.open("rb") as handle:
            created = client.post(
                "/v1/video/jobs", files={"file": ("v.mp4", handle)}, data={"task": "captions"}
            )
        assert created.status_code == 202
        with client.stream("GET", f"{created.headers['location']}/events") as events:
            lines = [line for line in events.iter_lines() if line.startswith("event: ")]
    assert lines.count("event: chunk") == 3
    assert lines[-2:] == ["event: result", "event: done"]
