"""Library search over everything a key's jobs analyzed, and what the page shows of a result.

    GET /v1/video/search?q=&mode=&limit=&job_id=   captions, transcripts and chapters matching q,
                                         by words and by meaning (hybrid by default), best first,
                                         each saying which search found it
    GET /v1/video/jobs/{id}/media        the job's video (Range requests: a player seeks in it)
    GET /v1/video/jobs/{id}/thumbnail?t= one frame at t seconds, a JPEG

The work is deploy/jobs/library.py; this module is HTTP only.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import cv2
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from deploy.api.jobs_protocol import hit_view, owner_of
from deploy.api.jobs_routes import int_param
from deploy.config.search_settings import SearchMode
from deploy.config.settings import AppArgs
from deploy.core.errors import Gone, InvalidRequest, NotFound, ServiceUnavailable
from deploy.core.messages import SamplingOptions, StoredFrames
from deploy.jobs.fusion import Ranked
from deploy.jobs.library import Found, Library
from deploy.jobs.records import JobRecord
from deploy.jobs.store import Store
from deploy.serving.handles import call_stage

MODES: tuple[SearchMode, ...] = ("hybrid", "text", "semantic")
MAX_QUERY_CHARS = 1000
THUMBNAIL_TIMEOUT_S = 60.0


class LibraryRoutes:
    def __init__(
        self,
        store: Store,
        library: Library,
        extractor: DeploymentHandle[Any] | None,
        args: AppArgs,
    ) -> None:
        self._store = store
        self.library = library  # the OpenAI routes answer questions over the library too
        self._extractor = extractor
        self._args = args

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/video/search", self.search, methods=["GET"]),
            Route("/v1/video/jobs/{job_id}/media", self.media, methods=["GET"]),
            Route("/v1/video/jobs/{job_id}/thumbnail", self.thumbnail, methods=["GET"]),
        ]

    async def search(self, request: Request) -> Response:
        params = request.query_params
        query = params.get("q", "").strip()
        if not query:
            raise InvalidRequest("give the words to search for as ?q=", param="q")
        if len(query) > MAX_QUERY_CHARS:
            raise InvalidRequest(f"q is over {MAX_QUERY_CHARS} characters", param="q")
        mode = params.get("mode") or None
        if mode is not None and mode not in MODES:
            raise InvalidRequest(
                f"mode must be one of {', '.join(MODES)}, not {mode!r}", param="mode"
            )
        limit = int_param(request, "limit", 10, 1, self._args.jobs.max_page_size)
        found = await self.library.search(
            owner_of(request),
            query,
            limit,
            mode,
            params.get("job_id") or None,  # type: ignore[arg-type]
        )
        return JSONResponse(found_view(found))

    async def media(self, request: Request) -> Response:
        job = await self._job(request)
        return FileResponse(job.source, filename=Path(job.video).name or None)

    async def thumbnail(self, request: Request) -> Response:
        job = await self._job(request)
        if self._extractor is None:
            raise ServiceUnavailable("thumbnails need the FrameExtractor, which is not here")
        at = _seconds(request.query_params.get("t", "0"), "t")
        if job.duration_s is not None:
            at = min(at, max(job.duration_s - 0.05, 0.0))
        options = SamplingOptions(num_frames=1, start_s=at, end_s=at + 0.04)
        call = self._extractor.extract_file.remote(job.source, options, "t")
        stored: StoredFrames = await call_stage(
            call, stage="extract", timeout_s=THUMBNAIL_TIMEOUT_S
        )
        frames = await stored.frames()
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(frames[0], cv2.COLOR_RGB2BGR))
        if not ok:  # pragma: no cover - OpenCV encodes any uint8 image
            raise InvalidRequest("no frame at that time", param="t")
        return Response(
            jpeg.tobytes(),
            media_type="image/jpeg",
            headers={"Cache-Control": "private, max-age=3600"},
        )

    async def _job(self, request: Request) -> JobRecord:
        job_id = request.path_params["job_id"]
        job = await asyncio.to_thread(self._store.get_job, job_id, owner_of(request))
        if job is None:
            raise NotFound(f"no job {job_id!r}", param="job_id", code="job_not_found")
        if job.media_removed_at is not None or not Path(job.source).is_file():
            raise Gone(
                f"the video of job {job_id} was deleted (jobs.media_retention_s, or the job "
                f"was cancelled); its captions are kept: GET /v1/video/jobs/{job_id}",
                param="job_id",
                code="job_media_deleted",
            )
        return job


def _seconds(raw: str, name: str) -> float:
    """A time in seconds as ASCII digits with up to 3 decimals (no exponent, no NaN)."""
    if not re.fullmatch(r"\d{1,7}(\.\d{1,3})?", raw):
        raise InvalidRequest(
            f"{name} is a time in seconds (digits, up to 3 decimals), got {raw[:32]!r}",
            param=name,
            code="out_of_range",
        )
    return float(raw)


def ranked_view(ranked: Ranked) -> dict[str, Any]:
    return hit_view(ranked.hit) | {
        "score": round(ranked.score, 6),
        "match": ranked.match,
        "text_rank": ranked.text_rank,
        "semantic_rank": ranked.semantic_rank,
        "similarity": None if ranked.similarity is None else round(ranked.similarity, 4),
    }


def found_view(found: Found) -> dict[str, Any]:
    return {
        "object": "list",
        "mode": found.mode,
        "embedding_model": found.model,
        "note": found.note,
        "data": [ranked_view(r) for r in found.results],
    }
