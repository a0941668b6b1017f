"""HTTP ingress: the Serve deployment that composes the app's route tables and middleware.

Routes (each group a class in api/ whose methods are the handlers and `routes()` its table):
    POST /v1/video/analyze      multipart video ('file'), image ('image') or 'url' + prompt
    GET  /healthz, /readyz      alive; ready once a backend can answer  (api/service_routes.py)
    GET  /openapi.json          the OpenAPI 3.1 document, generated from the models (api/openapi.py)
    POST /v1/chat/completions   OpenAI chat with image_url / video_url parts (api/openai_routes.py)
    GET  /v1/models             the served models, OpenAI's shape
    /v1/video/jobs, /v1/video/search   long-video jobs and search (api/jobs_routes.py)
    /v1/streams                 live streams, their windows, alerts, events (api/stream_routes.py)
    POST /v1/audio/transcriptions      OpenAI transcriptions, the speech track (api/audio_routes.py)
    GET  /                      the web page (deploy/web/: static files, no key needed)
Every route but the open paths (auth.open_paths) needs an API key when keys are configured
(api/auth.py). Errors are `{"error": {"message", "type", "code", "request_id"}}` with the status
of the typed error (api/error_handlers.py); what a replica lets in (bytes in flight, slow
bodies, request ids) is api/guard.py, API keys and their concurrency api/auth.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from deploy.api.audio_routes import AudioRoutes
from deploy.api.auth import ApiKeyMiddleware, ApiKeys, check_exposure
from deploy.api.error_handlers import on_http_error, on_unexpected, on_vidserve_error
from deploy.api.guard import ByteBudget, GuardMiddleware
from deploy.api.http_metrics import MetricsMiddleware
from deploy.api.jobs_routes import JobRoutes
from deploy.api.library_routes import LibraryRoutes
from deploy.api.openai_routes import OpenAIRoutes
from deploy.api.openapi import openapi_document
from deploy.api.service_routes import ServiceRoutes
from deploy.api.stream_routes import StreamRoutes
from deploy.config import env
from deploy.config.deployments import INGRESS_NAME
from deploy.config.settings import AppArgs
from deploy.core.errors import VidserveError
from deploy.jobs.job_runner import JobRunner
from deploy.jobs.library import Library
from deploy.jobs.store import open_store
from deploy.jobs.work import PipelineWork
from deploy.serving.backends import router_for
from deploy.serving.metrics import (
    HttpMetrics,
    ServeBackendMetrics,
    ServeHttpMetrics,
    ServeJobMetrics,
    ServeStageMetrics,
)
from deploy.serving.pipeline import AnalyzePipeline
from deploy.serving.speech_stage import SpeechStage
from deploy.speech.asr import model_name
from deploy.streams.stream_store import StreamStore
from deploy.web import page_routes

logger = logging.getLogger("ray.serve.vidserve.ingress")

DEPLOYMENT_NAME = INGRESS_NAME
# The most a replica's shutdown waits for its jobs runner to hand its leases back.
RUNNER_STOP_TIMEOUT_S = 5.0


def build_http_app(
    pipeline: AnalyzePipeline,
    args: AppArgs,
    keys: ApiKeys,
    metrics: HttpMetrics,
    jobs: tuple[JobRunner, JobRoutes] | None = None,
    *,
    audio: AudioRoutes | None = None,
    library: LibraryRoutes | None = None,
    streams: StreamRoutes | None = None,
) -> Starlette:
    """The ASGI app; `jobs` (the runner and its routes) adds the jobs API, the runner started
    and stopped with the app; `audio` the speech routes; `library` search across all jobs."""

    if library is None and jobs is not None:  # search by words alone, no thumbnails
        store = jobs[1].store
        library = LibraryRoutes(store, Library(store, None, args.search), None, args)
    openai = OpenAIRoutes(
        pipeline, args, jobs[1].store if jobs else None, library.library if library else None
    )
    document = openapi_document(
        args,
        openai.served,
        jobs=jobs is not None,
        keys=keys.enabled,
        speech=audio is not None,
        streams=streams is not None,
    )
    service = ServiceRoutes(pipeline, args, keys_enabled=keys.enabled, document=document)
    routes: list[BaseRoute] = [*service.routes(), *openai.routes()]
    routes += page_routes()  # the web page at / (deploy/web/)
    runner = jobs[0] if jobs else None
    if jobs is not None:
        routes += jobs[1].routes()
    if audio is not None:
        routes += audio.routes()
    if library is not None:
        routes += library.routes()
    if streams is not None:
        routes += streams.routes()

    app = Starlette(
        routes=routes,
        lifespan=lambda app: _lifespan(runner),
        middleware=[
            Middleware(MetricsMiddleware, metrics=metrics),
            Middleware(
                GuardMiddleware,
                settings=args.http,
                budget=ByteBudget(
                    args.http.max_inflight_bytes, per_client=args.max_inflight_bytes_per_client
                ),
                keys_enabled=keys.enabled,
            ),
            Middleware(
                ApiKeyMiddleware,
                keys=keys,
                open_paths=args.auth.open_paths,
                max_concurrent_per_key=args.auth.max_concurrent_per_key,
                retry_after_s=args.http.retry_after_s,
            ),
        ],
        exception_handlers={
            VidserveError: on_vidserve_error,
            HTTPException: on_http_error,
            Exception: on_unexpected,  # a fault of ours: JSON 500 with the request id
        },
    )
    app.state.retry_after_s = args.http.retry_after_s
    return app


@asynccontextmanager
async def _lifespan(runner: JobRunner | None) -> AsyncIterator[None]:
    """The jobs runner runs while the app does."""
    if runner is not None:
        runner.start()
    yield
    if runner is not None:
        # Bounded: a replica's shutdown never waits on the jobs database. Leases not handed
        # back expire by themselves (jobs.lease_s) and another replica resumes the jobs.
        try:
            await asyncio.wait_for(runner.stop(), timeout=RUNNER_STOP_TIMEOUT_S)
        except Exception:  # the replica is going away either way; say why, do not hang
            logger.warning("jobs: the runner did not stop cleanly", exc_info=True)


@serve.ingress()
class Ingress:
    """Serve deployment `Ingress` (options in serve_config.yaml); builds its app per replica."""

    def __init__(
        self,
        extractor: DeploymentHandle[Any],
        backends: dict[str, DeploymentHandle[Any]],
        args: AppArgs,
        *,
        transcriber: DeploymentHandle[Any] | None = None,
        embedder: DeploymentHandle[Any] | None = None,
        ingest: DeploymentHandle[Any] | None = None,
    ) -> None:
        self._args = args
        router = router_for(backends, args, ServeBackendMetrics())
        stages = ServeStageMetrics()
        speech = None
        if transcriber is not None:
            speech = SpeechStage(extractor, transcriber, args.speech, stages)
        self._pipeline = AnalyzePipeline(extractor, router, args, stages, speech)
        self._http_metrics = ServeHttpMetrics()
        self._keys = ApiKeys.load(args.auth)
        check_exposure(args.auth, self._keys, in_cluster=env.in_kubernetes())
        if self._keys.enabled:
            logger.info("API keys required (%d configured)", len(self._keys))
        # The jobs database: unreachable or unusable, the replica does not start and says why.
        store = open_store(args.store, args.jobs, vectors=embedder is not None)
        logger.info("jobs database: %s", store.describe)
        library = Library(store, embedder, args.search)
        runner = JobRunner(
            store,
            PipelineWork(extractor, router, args.jobs, speech, args.generation.max_prompt_chars),
            args.jobs,
            max_model_len=args.llm.max_model_len,
            metrics=ServeJobMetrics(),
            indexer=library.index,
        )
        self._jobs = (runner, JobRoutes(store, runner, args))
        self._library = LibraryRoutes(store, library, extractor, args)
        self._audio = AudioRoutes(speech, args, model_name(args.speech)) if speech else None
        self._streams = (
            StreamRoutes(StreamStore(store), args, ingest) if args.streams.enabled else None
        )

    def __serve_build_asgi_app__(self) -> Starlette:
        return build_http_app(
            self._pipeline,
            self._args,
            self._keys,
            self._http_metrics,
            self._jobs,
            audio=self._audio,
            library=self._library,
            streams=self._streams,
        )
