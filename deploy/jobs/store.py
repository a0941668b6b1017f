"""Durable state of long-video jobs: jobs, their chunk results, and the search index over every
caption and chapter, in SQLite or PostgreSQL (jobs/database.py), behind one small interface.

    store = open_store(args.store, args.jobs)      # connects, creates or migrates the schema
    store.create_job(job); store.record_chunk(chunk); store.search(owner, "goal", 10)

The records are jobs/records.py, the schema jobs/schema.py. Full-text search differs by
dialect: SQLite's FTS5, PostgreSQL's tsvector.

Blocking: callers on an event loop use `AsyncStore`, which runs each call in a thread; a lost
database is `StoreUnavailable` (503: nothing is lost, the request can be retried).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, ParamSpec, TypeVar

from deploy.config.settings import JobsSettings, StoreSettings
from deploy.core.jobs import JobState
from deploy.jobs import text_index, vector_index
from deploy.jobs.database import Database, connect
from deploy.jobs.records import (
    UNFINISHED,
    ChunkRecord,
    JobRecord,
    SearchHit,
    StoreError,
    StoreUnavailable,
)
from deploy.jobs.schema import (
    COUNTS,
    JOB_COLUMNS,
    STREAM_TASK,
    chunk_of,
    dumps,
    job_of,
)

logger = logging.getLogger("ray.serve.vidserve.store")


class Store:
    """The jobs database's queries. Thread-safe: the database runs one statement at a time."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.describe = db.describe

    def _tx(self) -> AbstractContextManager[Any]:
        return self.db.tx()

    def _run(self, cursor: Any, statement: str, params: Sequence[Any] = ()) -> Any:
        return self.db.run(cursor, statement, params)

    def close(self) -> None:
        self.db.close()

    def version(self) -> int:
        return self.db.version()

    def migrate(self) -> int:
        return self.db.migrate()

    # -- jobs --

    def create_job(self, job: JobRecord) -> None:
        with self._tx() as cur:
            self._run(
                cur,
                "INSERT INTO jobs (id, owner, task, state, video, source, spec, created_at, "
                "updated_at, media_bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    job.id,
                    job.owner,
                    job.task,
                    job.state.value,
                    job.video,
                    job.source,
                    json.dumps(job.spec),
                    job.created_at,
                    job.updated_at,
                    job.media_bytes,
                ],
            )

    def get_job(self, job_id: str, owner: str | None = None) -> JobRecord | None:
        """The job, or None when it does not exist or `owner` (when given) did not create it."""
        query = f"SELECT {JOB_COLUMNS}, {COUNTS} FROM jobs WHERE id = ?"
        params: list[Any] = [job_id]
        if owner is not None:
            query += " AND owner = ?"
            params.append(owner)
        with self._tx() as cur:
            row = self._run(cur, query, params).fetchone()
        return job_of(row) if row else None

    def list_jobs(
        self, owner: str, limit: int, before: tuple[float, str] | None = None
    ) -> list[JobRecord]:
        """`owner`'s jobs, newest first; `before`: (created_at, id) of the last one seen."""
        query = f"SELECT {JOB_COLUMNS}, {COUNTS} FROM jobs WHERE owner = ?"
        params: list[Any] = [owner]
        if before is not None:
            query += " AND (created_at < ? OR (created_at = ? AND id < ?))"
            params += [before[0], before[0], before[1]]
        query += " ORDER BY created_at DESC, id DESC LIMIT ?"
        with self._tx() as cur:
            rows = self._run(cur, query, [*params, limit]).fetchall()
        return [job_of(row) for row in rows]

    def count_by_state(self) -> dict[str, int]:
        with self._tx() as cur:
            rows = self._run(cur, "SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        return {state: int(count) for state, count in rows}

    def set_plan(self, job_id: str, duration_s: float, chunks_total: int) -> None:
        with self._tx() as cur:
            self._run(
                cur,
                "UPDATE jobs SET duration_s = ?, chunks_total = ?, state = ?, updated_at = ? "
                "WHERE id = ? AND state IN (?, ?)",
                [
                    duration_s,
                    chunks_total,
                    JobState.RUNNING.value,
                    time.time(),
                    job_id,
                    *UNFINISHED,
                ],
            )

    def finish(
        self,
        job_id: str,
        state: JobState,
        *,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        chapters: Sequence[tuple[float, float, str]] = (),
    ) -> bool:
        """Set a final state (and index the chapters' text); False when the job had finished
        already (e.g. cancelled meanwhile)."""
        with self._tx() as cur:
            updated = self._run(
                cur,
                "UPDATE jobs SET state = ?, result = ?, error = ?, updated_at = ?, "
                "lease_owner = NULL, lease_until = NULL WHERE id = ? AND state IN (?, ?)",
                [state.value, dumps(result), dumps(error), time.time(), job_id, *UNFINISHED],
            ).rowcount
            if updated:
                owner = self._run(cur, "SELECT owner FROM jobs WHERE id = ?", [job_id]).fetchone()
                for start_s, end_s, text in chapters:
                    span = (start_s, end_s)
                    text_index.add(
                        self.db,
                        cur,
                        job_id=job_id,
                        owner=owner[0],
                        kind="chapter",
                        span=span,
                        text=text,
                    )
        return bool(updated)

    def cancel(self, job_id: str, owner: str) -> JobRecord | None:
        """Cancel `owner`'s job (a finished one stays as it was); the job, or None if unknown."""
        with self._tx() as cur:
            self._run(
                cur,
                "UPDATE jobs SET state = ?, updated_at = ?, lease_owner = NULL, "
                "lease_until = NULL WHERE id = ? AND owner = ? AND state IN (?, ?)",
                [JobState.CANCELLED.value, time.time(), job_id, owner, *UNFINISHED],
            )
        return self.get_job(job_id, owner)

    def delete_job(self, job_id: str, owner: str) -> bool:
        """Remove `owner`'s job, its chunks and its search documents; False if unknown."""
        with self._tx() as cur:
            self._run(cur, "DELETE FROM documents WHERE job_id = ?", [job_id])
            self._run(cur, "DELETE FROM chunks WHERE job_id = ?", [job_id])
            gone = self._run(
                cur, "DELETE FROM jobs WHERE id = ? AND owner = ?", [job_id, owner]
            ).rowcount
        return bool(gone)

    def usage(self, owner: str) -> tuple[int, int]:
        """`owner`'s (jobs queued or running, bytes of media kept): what the quotas count."""
        with self._tx() as cur:
            active, kept = self._run(
                cur,
                "SELECT COALESCE(SUM(CASE WHEN state IN (?, ?) AND "
                f"task <> '{STREAM_TASK}' THEN 1 ELSE 0 END), 0), "
                "COALESCE(SUM(media_bytes), 0) FROM jobs WHERE owner = ?",
                [*UNFINISHED, owner],
            ).fetchone()
        return int(active), int(kept)

    def expired_media(self, finished_before: float, limit: int = 100) -> list[tuple[str, str]]:
        """(id, source) of finished jobs whose media is kept and older than `finished_before`."""
        with self._tx() as cur:
            rows = self._run(
                cur,
                "SELECT id, source FROM jobs WHERE state NOT IN (?, ?) AND media_bytes > 0 AND "
                "updated_at < ? ORDER BY updated_at LIMIT ?",
                [*UNFINISHED, finished_before, limit],
            ).fetchall()
        return [(str(job_id), str(source)) for job_id, source in rows]

    def media_removed(self, job_id: str) -> None:
        with self._tx() as cur:
            self._run(
                cur,
                "UPDATE jobs SET media_bytes = 0, media_removed_at = ? WHERE id = ?",
                [time.time(), job_id],
            )

    def state_of(self, job_id: str) -> JobState | None:
        with self._tx() as cur:
            row = self._run(cur, "SELECT state FROM jobs WHERE id = ?", [job_id]).fetchone()
        return JobState(row[0]) if row else None

    # -- leases: which replica runs a job --

    def claim(
        self, replica: str, lease_s: float, limit: int, max_claims: int | None = None
    ) -> list[str]:
        """Unfinished jobs nobody holds (never claimed, or their lease ran out: the replica that
        ran them died), now held by `replica`. Owners take turns: the next job is the oldest of
        the owner running fewest jobs, so one key's many jobs never starve another's. A job
        already claimed `max_claims` times without finishing is failed (`job_poisoned`)."""
        now = time.time()
        claimed: list[str] = []
        # A live stream's library record (task 'stream') is the StreamIngest's, never run here.
        free = f"state IN (?, ?) AND task <> '{STREAM_TASK}' AND "
        free += "(lease_until IS NULL OR lease_until < ?)"
        with self._tx() as cur:
            running = dict(
                self._run(
                    cur,
                    "SELECT owner, COUNT(*) FROM jobs WHERE state IN (?, ?) AND lease_until >= ? "
                    "GROUP BY owner",
                    [*UNFINISHED, now],
                ).fetchall()
            )
            waiting = dict(
                self._run(
                    cur,
                    f"SELECT owner, MIN(created_at) FROM jobs WHERE {free} GROUP BY owner",
                    [*UNFINISHED, now],
                ).fetchall()
            )
            while len(claimed) < limit and waiting:
                owner = min(waiting, key=lambda o: (running.get(o, 0), waiting[o], o))
                row = self._run(
                    cur,
                    f"SELECT id, claims, created_at FROM jobs WHERE owner = ? AND {free} "
                    "ORDER BY created_at, id LIMIT 1",
                    [owner, *UNFINISHED, now],
                ).fetchone()
                if row is None:
                    del waiting[owner]
                    continue
                job_id, claims, _ = row
                if max_claims is not None and claims >= max_claims:
                    self._poisoned(cur, job_id, claims)
                elif self._run(
                    cur,
                    "UPDATE jobs SET lease_owner = ?, lease_until = ?, claims = claims + 1 "
                    "WHERE id = ? AND (lease_until IS NULL OR lease_until < ?)",
                    [replica, now + lease_s, job_id, now],
                ).rowcount:  # 0: another replica took it first
                    claimed.append(job_id)
                    running[owner] = running.get(owner, 0) + 1
                following = self._run(
                    cur,
                    f"SELECT MIN(created_at) FROM jobs WHERE owner = ? AND {free}",
                    [owner, *UNFINISHED, now],
                ).fetchone()[0]
                if following is None:
                    del waiting[owner]
                else:
                    waiting[owner] = following
        return claimed

    def _poisoned(self, cur: Any, job_id: str, claims: int) -> None:
        error = {
            "code": "job_poisoned",
            "message": f"this job was started {claims} times and each time its replica died "
            "or stalled before it finished (jobs.max_job_claims); it is not tried again. A "
            "video that crashes the decoder or an engine can do this: try a shorter chunk_s, "
            "or report the video",
        }
        logger.warning("job %s failed: %s", job_id, error["message"])
        self._run(
            cur,
            "UPDATE jobs SET state = ?, error = ?, updated_at = ?, lease_owner = NULL, "
            "lease_until = NULL WHERE id = ?",
            [JobState.FAILED.value, json.dumps(error), time.time(), job_id],
        )

    def renew(self, replica: str, job_ids: Sequence[str], lease_s: float) -> list[str]:
        """Extend `replica`'s leases; the ids it no longer holds (finished or taken over)."""
        lost = []
        with self._tx() as cur:
            for job_id in job_ids:
                kept = self._run(
                    cur,
                    "UPDATE jobs SET lease_until = ? WHERE id = ? AND lease_owner = ? AND "
                    "state IN (?, ?)",
                    [time.time() + lease_s, job_id, replica, *UNFINISHED],
                ).rowcount
                if not kept:
                    lost.append(job_id)
        return lost

    def release(self, replica: str, job_ids: Sequence[str]) -> None:
        """Give leases back (a replica shutting down): another replica resumes the jobs."""
        with self._tx() as cur:
            for job_id in job_ids:
                self._run(
                    cur,
                    # Handed back cleanly (a redeploy): that start does not count as a death.
                    "UPDATE jobs SET lease_owner = NULL, lease_until = NULL, "
                    "claims = CASE WHEN claims > 0 THEN claims - 1 ELSE 0 END "
                    "WHERE id = ? AND lease_owner = ?",
                    [job_id, replica],
                )

    # -- chunks --

    def record_chunk(self, chunk: ChunkRecord, owner: str) -> bool:
        """Keep a chunk's result (and index its caption); False when it was recorded already:
        each chunk is kept once."""
        with self._tx() as cur:
            exists = self._run(
                cur,
                "SELECT 1 FROM chunks WHERE job_id = ? AND idx = ?",
                [chunk.job_id, chunk.index],
            ).fetchone()
            if exists:
                return False
            self._run(
                cur,
                "INSERT INTO chunks (job_id, idx, start_s, end_s, text, error, attempts, tokens, "
                "finished_at, transcript) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    chunk.job_id,
                    chunk.index,
                    chunk.start_s,
                    chunk.end_s,
                    chunk.text,
                    dumps(chunk.error),
                    chunk.attempts,
                    chunk.tokens,
                    chunk.finished_at,
                    chunk.transcript,
                ],
            )
            self._run(
                cur, "UPDATE jobs SET updated_at = ? WHERE id = ?", [time.time(), chunk.job_id]
            )
            span = (chunk.start_s, chunk.end_s)
            for kind, text in (("caption", chunk.text), ("speech", chunk.transcript)):
                if text:
                    text_index.add(
                        self.db, cur, job_id=chunk.job_id, owner=owner, kind=kind, span=span,
                        text=text,
                    )  # fmt: skip
        return True

    def chunks(self, job_id: str, after: int = -1) -> list[ChunkRecord]:
        """The job's recorded chunks with an index above `after`, in index order."""
        with self._tx() as cur:
            rows = self._run(
                cur,
                "SELECT job_id, idx, start_s, end_s, text, error, attempts, tokens, finished_at, "
                "transcript FROM chunks WHERE job_id = ? AND idx > ? ORDER BY idx",
                [job_id, after],
            ).fetchall()
        return [chunk_of(row) for row in rows]

    # -- search (jobs/text_index.py) --

    def search(
        self, owner: str, text: str, limit: int, job_id: str | None = None
    ) -> list[SearchHit]:
        """`owner`'s captions and chapters matching the words of `text`, best first (of one
        job's, given `job_id`)."""
        return text_index.search(self.db, owner, text, limit, job_id)


# --- opening ---------------------------------------------------------------------------------


def default_url(jobs: JobsSettings) -> str:
    return f"sqlite:///{jobs.resolved_data_dir() / 'vidserve.db'}"


def open_store(settings: StoreSettings, jobs: JobsSettings, *, vectors: bool = False) -> Store:
    """Connect, then create or migrate the schema (and the vector table, given `vectors`:
    search.semantic). Raises StoreError saying which database and what to do when it cannot be
    used."""
    store = Store(connect(settings.url or default_url(jobs), settings))
    try:
        store.migrate()
        if vectors:
            vector_index.ensure(store.db)
    except StoreUnavailable as exc:
        raise StoreError(
            f"{exc.message}. Check that the database is running and that store.url (or "
            "VIDSERVE_STORE_URL) names it"
        ) from exc
    return store


P = ParamSpec("P")
T = TypeVar("T")


class AsyncStore:
    """The store for an event loop: each call in a worker thread."""

    def __init__(self, store: Store) -> None:
        self.sync = store

    async def call(self, method: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await asyncio.to_thread(method, *args, **kwargs)
