"""The jobs API: long videos summarized, chaptered or captioned as durable jobs, and search over
everything analyzed (deploy/jobs/ does the work; this module is HTTP only).

    POST   /v1/video/jobs               multipart ('file' + fields) or JSON ({"url", ...}) -> 202
    GET    /v1/video/jobs               the caller's jobs, newest first (?limit=&after=)
    GET    /v1/video/jobs/{id}          state, progress, chunk results so far, result, error
    GET    /v1/video/jobs/{id}/events   server-sent events: `chunk` per chunk as it finishes,
                                        `state` on each change, then `result`, then `done`
    DELETE /v1/video/jobs/{id}          unfinished: cancel (its in-flight engine calls are
                                        cancelled, its video deleted); finished: delete the
                                        job, its chunks, its search entries and its video
    (search across all of a key's jobs, a job's video and thumbnails: api/library_routes.py)

A job belongs to the API key that created it (a fingerprint of it is stored, not the key);
another key gets 404 for it, as for a job that does not exist. Each key has quotas (jobs queued
or running, bytes of video kept: 429) and the disk a free-space floor (507): jobs/media.py.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from deploy.api import json_body
from deploy.api.body import read_capped
from deploy.api.error_body import error_body
from deploy.api.jobs_protocol import chunk_view, job_view, owner_of, parse_job_request
from deploy.api.sse import DONE, KEEPALIVE, KEEPALIVE_S, EventSlots, event
from deploy.api.upload import read_multipart
from deploy.config.settings import AppArgs
from deploy.core.errors import (
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    UnprocessableInput,
)
from deploy.core.jobs import JobState
from deploy.core.messages import MediaKind
from deploy.core.numbers import decimal
from deploy.jobs.job_runner import JobRunner
from deploy.jobs.media import JobMedia, QuotaSink
from deploy.jobs.records import JobRecord, StoreUnavailable
from deploy.jobs.spec import JobSpec
from deploy.jobs.store import Store
from deploy.serving.fetch import UrlFetcher
from deploy.video.container import sniff

# A job request's JSON (the video comes by URL): small.
MAX_JOB_JSON_BYTES = 256 * 1024


class JobRoutes:
    def __init__(self, store: Store, runner: JobRunner, args: AppArgs) -> None:
        self.store = store  # the OpenAI routes answer questions about jobs from it too
        self._runner = runner
        self._args = args
        self._media = JobMedia(args.jobs)
        self._fetcher = UrlFetcher(args.url_fetch)
        self._slots = EventSlots()  # event streams open here, per key or address

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/video/jobs", self.create, methods=["POST"]),
            Route("/v1/video/jobs", self.list, methods=["GET"]),
            Route("/v1/video/jobs/{job_id}", self.get, methods=["GET"]),
            Route("/v1/video/jobs/{job_id}", self.cancel, methods=["DELETE"]),
            Route("/v1/video/jobs/{job_id}/events", self.events, methods=["GET"]),
        ]

    # -- create --

    async def create(self, request: Request) -> Response:
        job_id = f"job_{uuid.uuid4().hex}"
        owner = owner_of(request)
        active, kept = await asyncio.to_thread(self.store.usage, owner)
        incoming = decimal(request.headers.get("content-length")) or 0
        self._media.check_quota(active, kept, incoming)  # refused before a byte is read
        await asyncio.to_thread(self._media.check_room, incoming)
        if request.headers.get("content-type", "").startswith("application/json"):
            spec, video, source, size = await self._from_json(request, job_id, active, kept)
        else:
            spec, video, source, size = await self._from_upload(request, job_id, active, kept)
        now = time.time()
        job = JobRecord(
            id=job_id,
            owner=owner,
            task=spec.task.value,
            state=JobState.QUEUED,
            video=video,
            source=source,
            spec=spec.model_dump(mode="json"),
            created_at=now,
            updated_at=now,
            media_bytes=size,
        )
        try:
            await asyncio.to_thread(self.store.create_job, job)
        except BaseException:
            await asyncio.to_thread(self._media.remove, source)
            raise
        self._runner.wake()
        return JSONResponse(
            job_view(job), status_code=202, headers={"Location": f"/v1/video/jobs/{job_id}"}
        )

    async def _from_json(
        self, request: Request, job_id: str, active: int, kept: int
    ) -> tuple[JobSpec, str, str, int]:
        body = await read_capped(request, MAX_JOB_JSON_BYTES, _json_too_large)
        raw = json_body.loads(
            body, self._args.http.max_json_depth, what="the body", param=None, code="invalid_json"
        )
        if not isinstance(raw, dict):
            raise InvalidRequest("the body must be a JSON object", code="invalid_json")
        spec, url = parse_job_request(raw, self._args)
        if not url:
            raise InvalidRequest(
                "a JSON job needs a 'url' (http(s), or file:// inside url_fetch.local_dir); "
                "or upload the video as multipart field 'file'",
                param="url",
                code="missing_file",
            )
        if url.startswith("file:"):  # the user's own file, read in place: not ours to keep
            return spec, url, str(await asyncio.to_thread(self._fetcher.local_path, url)), 0
        path = self._media.folder / f"{job_id}.video"
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with path.open("wb") as out:  # streamed to disk as it arrives
                size = await self._fetcher.fetch_into(
                    url, QuotaSink(out, self._media, active, kept).write
                )
            await asyncio.to_thread(_check_video_file, path)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return spec, url, str(path), size

    async def _from_upload(
        self, request: Request, job_id: str, active: int, kept: int
    ) -> tuple[JobSpec, str, str, int]:
        upload = await read_multipart(
            request, self._args.extraction.max_upload_bytes, self._args.http.spool_threshold_bytes
        )
        try:
            fields = {k: v for k, v in upload.form.multi_items() if isinstance(v, str)}
            spec, url = parse_job_request(fields, self._args)
            file = upload.form.get("file")
            if url is not None or not isinstance(file, UploadFile):
                raise InvalidRequest(
                    "upload the video as multipart field 'file' (or send JSON with a 'url')",
                    param="file",
                    code="missing_file",
                )
            size = file.size or 0
            self._media.check_quota(active, kept, size)
            await asyncio.to_thread(self._media.check_room, size)
            suffix = Path(file.filename or "").suffix[:8] or ".video"
            path = self._media.folder / f"{job_id}{suffix}"
            await asyncio.to_thread(_save, file, path)
            return spec, file.filename or path.name, str(path), path.stat().st_size
        finally:
            await upload.close()

    # -- read --

    async def get(self, request: Request) -> Response:
        job = await self._job(request)
        chunks = await asyncio.to_thread(self.store.chunks, job.id)
        return JSONResponse(job_view(job, chunks))

    async def list(self, request: Request) -> Response:
        limit = int_param(request, "limit", 20, 1, self._args.jobs.max_page_size)
        after = request.query_params.get("after")
        before = None
        if after:
            last = await asyncio.to_thread(self.store.get_job, after, owner_of(request))
            if last is None:
                raise InvalidRequest("after names no job of yours", param="after")
            before = (last.created_at, last.id)
        jobs = await asyncio.to_thread(self.store.list_jobs, owner_of(request), limit, before)
        return JSONResponse(
            {
                "object": "list",
                "data": [job_view(job) for job in jobs],
                "has_more": len(jobs) == limit,
                "last_id": jobs[-1].id if jobs else None,
            }
        )

    async def cancel(self, request: Request) -> Response:
        """Unfinished: cancelled (the row kept, to say so). Finished: deleted with its files."""
        job = await self._job(request)
        if job.state.finished:
            await asyncio.to_thread(self.store.delete_job, job.id, job.owner)
            await asyncio.to_thread(self._media.remove, job.source)
            return JSONResponse({"id": job.id, "object": "video.job", "deleted": True})
        cancelled = await asyncio.to_thread(self.store.cancel, job.id, job.owner)
        self._runner.cancel(job.id)  # when it runs here; elsewhere its lease renewal stops it
        if job.media_bytes:  # it will not run again: its video goes now
            await asyncio.to_thread(self._media.remove, job.source)
            await asyncio.to_thread(self.store.media_removed, job.id)
            cancelled = await asyncio.to_thread(self.store.get_job, job.id, job.owner)
        return JSONResponse(job_view(cancelled or job))

    async def events(self, request: Request) -> Response:
        job = await self._job(request)
        return self._slots.respond(
            request,
            owner_of(request),
            self._events(job.id),
            cap=self._args.jobs.max_event_streams_per_key,
            setting="jobs.max_event_streams_per_key",
            retry_after_s=self._args.http.retry_after_s,
        )

    async def _events(self, job_id: str) -> AsyncIterator[str]:
        seen: set[int] = set()
        state: JobState | None = None
        idle_since = time.monotonic()
        while True:
            try:
                job = await asyncio.to_thread(self.store.get_job, job_id)
                chunks = await asyncio.to_thread(self.store.chunks, job_id)
            except StoreUnavailable as exc:
                yield event("error", error_body(exc))
                return
            if job is None:
                return
            for chunk in chunks:
                if chunk.index not in seen:
                    seen.add(chunk.index)
                    yield event("chunk", chunk_view(chunk) | {"progress": _progress(job, seen)})
                    idle_since = time.monotonic()
            if job.state is not state:
                state = job.state
                yield event("state", {"state": state.value, "progress": _progress(job, seen)})
            if job.state.finished:
                yield event("result", job_view(job))
                yield DONE
                return
            if time.monotonic() - idle_since > KEEPALIVE_S:
                yield KEEPALIVE
                idle_since = time.monotonic()
            await asyncio.sleep(self._args.jobs.events_poll_s)

    async def _job(self, request: Request) -> JobRecord:
        job_id = request.path_params["job_id"]
        job = await asyncio.to_thread(self.store.get_job, job_id, owner_of(request))
        if job is None:
            raise NotFound(f"no job {job_id!r}", param="job_id", code="job_not_found")
        return job


def _progress(job: JobRecord, seen: set[int]) -> dict[str, Any]:
    return {"chunks_seen": len(seen), "chunks_total": job.chunks_total}


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    value = decimal(raw)
    if value is None or not low <= value <= high:
        raise InvalidRequest(
            f"{name} must be a whole number from {low} to {high} (ASCII digits), got {raw[:32]!r}",
            param=name,
            code="out_of_range",
        )
    return value


def _json_too_large() -> PayloadTooLarge:
    return PayloadTooLarge(
        f"a JSON job request is at most {MAX_JOB_JSON_BYTES} bytes; upload videos as multipart "
        "field 'file'"
    )


def _check_video(head: bytes) -> None:
    if sniff(head).kind is not MediaKind.VIDEO:
        raise UnprocessableInput(
            "the upload is not a video: send an MP4, MOV, MKV, WebM or AVI file",
            param="file",
            code="unsupported_media",
        )


def _save(file: UploadFile, path: Path) -> None:
    """The upload (spooled to disk by the parser) copied into the jobs' media directory."""
    file.file.seek(0)
    _check_video(file.file.read(512))
    file.file.seek(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        shutil.copyfileobj(file.file, out, 1024 * 1024)


def _check_video_file(path: Path) -> None:
    with path.open("rb") as handle:
        _check_video(handle.read(512))
