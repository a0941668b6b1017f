"""Runs long-video jobs in an ingress replica, durably.

    POST /v1/video/jobs ─► store.create_job (queued) ─► runner.wake()
    runner loop (every lease_s / 3, or when woken):
        renew the leases of the jobs it runs (a job cancelled or taken over: its task stops)
        claim queued jobs and jobs whose lease ran out (their replica died), up to
            jobs.max_running_jobs, owners in turn (fewest running first); a job claimed
            jobs.max_job_claims times without finishing is failed (poison-job rule)
        delete finished jobs' videos older than jobs.media_retention_s
        and run each claimed job:
    job: duration (extractor.probe_file) ─► plan_chunks ─► chunks not yet in the store, at most
         jobs.max_chunks_in_flight at a time: extractor.extract_file (any replica) ─► caption
         (backend policy) ─► store.record_chunk   (kept once: a resumed job skips done chunks)
         ─► aggregate (summary / chapters) ─► store.finish

Where the state is: only in the store. A replica that dies loses nothing but the chunks in
flight, which the next owner (after the lease runs out) computes; a restarted app resumes every
unfinished job. One job never holds more than `max_chunks_in_flight` engine requests, so long
jobs leave the engines' other slots to interactive requests.

A chunk that fails with a server-side error (5xx, a timeout) is tried again, up to
jobs.chunk_attempts with a doubling wait; a client-side one (a corrupt stretch of video, 4xx) is
not. A failed chunk is kept with its error; the job finishes with the others (and says which
failed); a job whose every chunk failed fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from deploy.config.settings import JobsSettings
from deploy.core.errors import VidserveError
from deploy.core.jobs import JobState
from deploy.jobs.aggregate import Aggregator, Chapter
from deploy.jobs.media import JobMedia
from deploy.jobs.plan import Piece, plan_chunks
from deploy.jobs.records import ChunkRecord, JobRecord, Span, StoreUnavailable
from deploy.jobs.spec import JobSpec, JobTask
from deploy.jobs.store import Store
from deploy.jobs.work import JobWork

logger = logging.getLogger("ray.serve.vidserve.jobs")


class JobMetrics(Protocol):
    def chunk(self, outcome: str, seconds: float) -> None: ...

    def jobs(self, by_state: dict[str, int]) -> None: ...

    def finished(self, state: str) -> None: ...


class JobRunner:
    def __init__(
        self,
        store: Store,
        work: JobWork,
        settings: JobsSettings,
        *,
        max_model_len: int,
        metrics: JobMetrics | None = None,
        replica_id: str | None = None,
        indexer: Callable[[str], Awaitable[int]] | None = None,
    ) -> None:
        self._store = store
        # Vectors for library search (jobs/library.py Library.index), one job's at a time.
        self._indexer = indexer
        self._indexing = asyncio.Lock()
        self._work = work
        self._settings = settings
        self._metrics = metrics
        self.replica_id = replica_id or f"replica-{uuid.uuid4().hex[:12]}"
        self._aggregator = Aggregator(
            work,
            max_model_len=max_model_len,
            answer_tokens=settings.summary_max_tokens,
            chunks_per_chapter=settings.chunks_per_chapter,
            concurrency=settings.max_chunks_in_flight,
        )
        self._running: dict[str, asyncio.Task[None]] = {}
        self._media = JobMedia(settings)
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None

    # -- lifecycle --

    def start(self) -> None:
        if self._loop_task is None:
            self._loop_task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Stop every job here and hand the leases back: another replica (or this app once
        restarted) resumes them."""
        if self._loop_task is not None:
            self._loop_task.cancel()
        held = list(self._running)
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if not held:
            return
        try:
            await asyncio.to_thread(self._store.release, self.replica_id, held)
        except StoreUnavailable:
            logger.warning(
                "could not hand back %d job leases; they expire by themselves", len(held)
            )

    def wake(self) -> None:
        self._wake.set()

    def cancel(self, job_id: str) -> bool:
        """Stop the job's task if it runs here (its in-flight engine calls are cancelled with it);
        the store already says `cancelled`."""
        task = self._running.get(job_id)
        if task is None:
            return False
        task.cancel()
        return True

    @property
    def running(self) -> list[str]:
        return list(self._running)

    # -- the loop --

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except StoreUnavailable as exc:
                logger.warning("jobs: %s", exc.message)
            except Exception:
                logger.exception("jobs: the runner's loop failed; trying again")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._settings.lease_s / 3)

    async def tick(self) -> None:
        """Renew, stop what was lost, claim what is free, report."""
        store, lease_s = self._store, self._settings.lease_s
        lost = await asyncio.to_thread(store.renew, self.replica_id, self.running, lease_s)
        for job_id in lost:
            self.cancel(job_id)
        free = self._settings.max_running_jobs - len(self._running)
        if free > 0:
            claimed = await asyncio.to_thread(
                store.claim, self.replica_id, lease_s, free, self._settings.max_job_claims
            )
            for job_id in claimed:
                self._launch(job_id)
        await asyncio.to_thread(self._sweep_media)
        if self._metrics is not None:
            self._metrics.jobs(await asyncio.to_thread(store.count_by_state))

    def _sweep_media(self) -> None:
        """Finished jobs' videos past jobs.media_retention_s are deleted (the job is kept)."""
        cutoff = time.time() - self._settings.media_retention_s
        for job_id, source in self._store.expired_media(cutoff):
            self._media.remove(source)
            self._store.media_removed(job_id)
            logger.info("job %s: its video was deleted (jobs.media_retention_s)", job_id)

    def _launch(self, job_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._run(job_id), name=f"job {job_id}")
        self._running[job_id] = task
        task.add_done_callback(lambda _: self._running.pop(job_id, None))

    # -- one job --

    async def _run(self, job_id: str) -> None:
        try:
            job = await asyncio.to_thread(self._store.get_job, job_id)
            if job is None or job.state.finished:
                return
            await self._run_job(job)
        except asyncio.CancelledError:
            logger.info("job %s stopped here (cancelled, or taken over)", job_id)
            raise
        except StoreUnavailable as exc:
            # Nothing is lost: the lease runs out and the job resumes from its last chunk.
            logger.warning("job %s paused: %s", job_id, exc.message)
        except VidserveError as exc:
            await self._finish(job_id, JobState.FAILED, error=_error(exc))
        except Exception as exc:
            logger.exception("job %s failed", job_id)
            error = {"code": "internal_error", "message": f"the job failed: {exc!r}"}
            await self._finish(job_id, JobState.FAILED, error=error)

    async def _run_job(self, job: JobRecord) -> None:
        spec = JobSpec.model_validate(job.spec)
        duration = job.duration_s
        if duration is None:
            duration = await self._work.duration(job.source)
        # Off the event loop: whatever a plan costs, health checks and requests go on.
        spans = await asyncio.to_thread(
            plan_chunks, duration, spec.chunk_s, spec.overlap_s, self._settings.max_chunks
        )
        await asyncio.to_thread(self._store.set_plan, job.id, duration, len(spans))
        done = {c.index for c in await asyncio.to_thread(self._store.chunks, job.id)}
        todo = [(i, span) for i, span in enumerate(spans) if i not in done]
        if done:
            logger.info("job %s resumes: %d of %d chunks done", job.id, len(done), len(spans))
        await self._chunks(job, spec, todo)
        chunks = await asyncio.to_thread(self._store.chunks, job.id)
        await self._conclude(job, spec, duration, chunks)

    async def _chunks(self, job: JobRecord, spec: JobSpec, todo: list[tuple[int, Span]]) -> None:
        """Caption `todo`, at most max_chunks_in_flight at once (a pool of that many workers)."""
        queue = list(reversed(todo))

        async def worker() -> None:
            while queue:
                index, span = queue.pop()
                record = await self._chunk(job, spec, index, span)
                await asyncio.to_thread(self._store.record_chunk, record, job.owner)
                await self._index(job.id)

        workers = min(self._settings.max_chunks_in_flight, len(todo))
        await asyncio.gather(*(worker() for _ in range(workers)))

    async def _chunk(self, job: JobRecord, spec: JobSpec, index: int, span: Span) -> ChunkRecord:
        attempts = 0
        while True:
            attempts += 1
            started = time.perf_counter()
            try:
                generated = await self._work.caption(job.source, span, spec)
            except VidserveError as exc:
                self._observe("failed", started)
                if exc.status_code < 500 or attempts >= self._settings.chunk_attempts:
                    logger.warning("job %s chunk %d failed: %s", job.id, index, exc.message)
                    return ChunkRecord(job.id, index, *span, None, _error(exc), attempts)
                await asyncio.sleep(self._settings.retry_backoff_s * 2 ** (attempts - 1))
                continue
            self._observe("done", started)
            return ChunkRecord(
                job.id,
                index,
                *span,
                generated.text,
                None,
                attempts,
                tokens=generated.tokens,
                transcript=generated.transcript,
            )

    def _observe(self, outcome: str, started: float) -> None:
        if self._metrics is not None:
            self._metrics.chunk(outcome, time.perf_counter() - started)

    async def _conclude(
        self, job: JobRecord, spec: JobSpec, duration: float, chunks: list[ChunkRecord]
    ) -> None:
        pieces = [Piece(c.start_s, c.end_s, c.text or "", c.tokens) for c in chunks if c.ok]
        failed = [
            {"index": c.index, "start_s": c.start_s, "end_s": c.end_s, "error": c.error}
            for c in chunks
            if not c.ok
        ]
        if not pieces:
            error = {
                "code": "all_chunks_failed",
                "message": f"every one of the {len(chunks)} chunks failed; see failed_chunks",
                "failed_chunks": failed,
            }
            await self._finish(job.id, JobState.FAILED, error=error)
            return
        result: dict[str, Any] = {"failed_chunks": failed}
        chapters: list[Chapter] = []
        if spec.task is JobTask.CAPTIONS:
            result["captions"] = [
                {"start_s": p.start_s, "end_s": p.end_s, "text": p.text} for p in pieces
            ]
        elif spec.task is JobTask.CHAPTERS:
            chapters = await self._aggregator.chapters(pieces, duration)
            result["chapters"] = [c.as_dict() for c in chapters]
            named = [c.as_piece() for c in chapters]
            result["summary"], result["levels"] = await self._aggregator.summary(named, spec)
        else:
            result["summary"], result["levels"] = await self._aggregator.summary(pieces, spec)
        indexed = [(c.start_s, c.end_s, f"{c.title}. {c.summary}") for c in chapters]
        await self._finish(job.id, JobState.SUCCEEDED, result=result, chapters=indexed)
        await self._index(job.id)

    async def _index(self, job_id: str) -> None:
        """The search vectors of what the job recorded (never fails the job: Library.index
        leaves what it cannot embed now for later)."""
        if self._indexer is not None:
            async with self._indexing:
                await self._indexer(job_id)

    async def _finish(self, job_id: str, state: JobState, **kwargs: Any) -> None:
        finished = await asyncio.to_thread(self._store.finish, job_id, state, **kwargs)
        if finished:
            logger.info("job %s %s", job_id, state.value)
            if self._metrics is not None:
                self._metrics.finished(state.value)


def _error(exc: VidserveError) -> dict[str, Any]:
    return {"code": exc.code, "message": exc.message, "status": exc.status_code}
