"""The jobs side without Ray: `ScriptedWork` (a JobWork answering from a script) and the
ingress's real Starlette app with the jobs routes on a real store, in process (`jobs_client`) or
on a real uvicorn server (`served`)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.testclient import TestClient

from deploy.api.auth import ApiKeys
from deploy.api.jobs_routes import JobRoutes
from deploy.api.library_routes import LibraryRoutes
from deploy.config.settings import AppArgs, StoreSettings
from deploy.core.errors import VidserveError
from deploy.ingress import build_http_app
from deploy.jobs.job_runner import JobRunner
from deploy.jobs.library import Library
from deploy.jobs.records import Span
from deploy.jobs.spec import JobSpec
from deploy.jobs.store import open_store
from deploy.jobs.work import Generated
from deploy.serving.backends import BackendRouter
from deploy.serving.pipeline import AnalyzePipeline
from tests.support.asgi_server import uvicorn_server
from tests.support.handles import AnsweringHandle
from tests.support.recorders import MetricsRecorder


class ScriptedWork:
    """JobWork answering from a script: `fail(index, attempt)` may return an error to raise;
    `speech`: each chunk also heard something (its transcript)."""

    def __init__(
        self,
        duration_s: float,
        fail: Callable[[int, int], VidserveError | None] = lambda i, a: None,
        delay_s: float = 0.01,
        speech: bool = False,
    ) -> None:
        self.speech = speech
        self.duration_s = duration_s
        self._fail = fail
        self._delay_s = delay_s
        self.captions: Counter[int] = Counter()  # chunk index -> calls
        self.in_flight = 0
        self.peak = 0
        self.prompts: list[str] = []
        self.started = asyncio.Event()

    async def duration(self, source: str) -> float:
        return self.duration_s

    async def caption(self, source: str, span: Span, spec: JobSpec) -> Generated:
        index = round(span[0] / (spec.chunk_s - spec.overlap_s))
        self.captions[index] += 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        self.started.set()
        try:
            await asyncio.sleep(self._delay_s)
            if (error := self._fail(index, self.captions[index])) is not None:
                raise error
            heard = f"[00:00-00:02] the driver says refuel before chunk {index + 1}"
            return Generated(
                f"scene {index} shows a red ball", 7, "", heard if self.speech else None
            )
        finally:
            self.in_flight -= 1

    async def generate(
        self, prompt: str, max_tokens: int, json_schema: dict[str, Any] | None = None
    ) -> Generated:
        self.prompts.append(prompt)
        if json_schema is not None:
            return Generated('{"title": "A ball", "summary": "A red ball rolls."}', 12)
        return Generated(f"summary of {prompt.count(chr(10) + '[')} lines", 20)


async def _never() -> None:
    raise AssertionError("no extraction expected")


class _NoBackend:
    name = "ollama"

    async def ready(self, timeout_s: float) -> str:
        return "m"


def jobs_app(args: AppArgs, store_url: str, work: ScriptedWork, embedder: Any = None) -> Starlette:
    """`embedder`: the Embedder's handle (tests/support/library.py EncoderHandle: the real
    model), or None: library search by words only."""
    semantic = embedder is not None and args.search.semantic
    store = open_store(StoreSettings(url=store_url), args.jobs, vectors=semantic)
    router = BackendRouter([_NoBackend()], args.backends.circuit_breaker)  # type: ignore[list-item]
    pipeline = AnalyzePipeline(AnsweringHandle(_never), router, args)  # type: ignore[arg-type]
    library = Library(store, embedder, args.search)
    runner = JobRunner(
        store, work, args.jobs, max_model_len=args.llm.max_model_len, indexer=library.index
    )
    return build_http_app(
        pipeline,
        args,
        ApiKeys([]),
        MetricsRecorder(),
        (runner, JobRoutes(store, runner, args)),
        library=LibraryRoutes(store, library, AnsweringHandle(_never), args),  # type: ignore[arg-type]
    )


def jobs_client(
    args: AppArgs, store_url: str, work: ScriptedWork, embedder: Any = None
) -> TestClient:
    return TestClient(jobs_app(args, store_url, work, embedder))


@contextmanager
def served(args: AppArgs, store_url: str, work: ScriptedWork) -> Iterator[str]:
    """The app on a real uvicorn server on loopback (for streams held open); its URL."""
    with uvicorn_server(jobs_app(args, store_url, work)) as port:
        yield f"http://127.0.0.1:{port}"


def finished(client: TestClient, path: str, timeout_s: float = 60.0) -> dict[str, Any]:
    """The job at `path` once it has finished (polled)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(path).json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError("the job did not finish")
