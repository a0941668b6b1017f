"""Durable state of long-video jobs: jobs, their chunk results, and the search index over every
caption and chapter, in a real database: SQLite (a file, the embedded default) or PostgreSQL
(clusters), behind one small interface.

    store = open_store(args.store, args.jobs)      # connects, creates or migrates the schema
    store.create_job(job); store.record_chunk(chunk); store.search(owner, "goal", 10)

One SQL text serves both databases where they agree (placeholders are written `?` and turned
into psycopg's `%s`); where they differ (full-text search: SQLite's FTS5, PostgreSQL's tsvector)
each has its own statements. The schema is versioned (`schema_version`) and migrated forward by
`migrate` at start-up, under a lock on PostgreSQL so two replicas starting together do not race.

Blocking: callers on an event loop use `AsyncStore`, which runs each call in a thread and turns
a lost database into `StoreUnavailable` (503: nothing is lost, the request can be retried).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from deploy.config.settings import JobsSettings, StoreSettings
from deploy.core.errors import ServiceUnavailable
from deploy.core.jobs import JobState

logger = logging.getLogger("ray.serve.vidserve.store")


UNFINISHED = (JobState.QUEUED.value, JobState.RUNNING.value)
Span = tuple[float, float]  # [start_s, end_s) of video


@dataclass
class JobRecord:
    id: str
    owner: str  # a fingerprint of the API key that created it ("" when keys are off)
    task: str
    state: JobState
    video: str  # what the user sent: the file name or the URL
    source: str  # the local path the extractor reads
    spec: dict[str, Any]  # the validated job request (api/jobs_protocol.py JobSpec)
    created_at: float
    updated_at: float
    duration_s: float | None = None
    chunks_total: int | None = None
    chunks_done: int = 0
    chunks_failed: int = 0
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    media_bytes: int = 0  # bytes of `source` that are the service's to delete (0: none)
    claims: int = 0  # times claimed without finishing or being handed back
    media_removed_at: float | None = None  # when its video was deleted (retention, cancel)


@dataclass(frozen=True)
class ChunkRecord:
    job_id: str
    index: int
    start_s: float
    end_s: float
    text: str | None  # the caption; None when the chunk failed
    error: dict[str, Any] | None = None  # {"code", "message"} of the last try
    attempts: int = 1
    tokens: int = 0  # the caption's length in the engine's tokens (aggregation plans with it)
    finished_at: float = field(default_factory=time.time)

    @property
    def ok(self) -> bool:
        return self.text is not None


@dataclass(frozen=True)
class SearchHit:
    job_id: str
    video: str
    kind: str  # "caption" or "chapter"
    start_s: float
    end_s: float
    text: str
    score: float


class StoreUnavailable(ServiceUnavailable):
    code_default = "store_unavailable"


class StoreError(RuntimeError):
    """The database cannot be used at start-up (the message says which and what to do)."""


# --- the schema ----------------------------------------------------------------------------

_COMMON_V1 = [
    """CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        task TEXT NOT NULL,
        state TEXT NOT NULL,
        video TEXT NOT NULL,
        source TEXT NOT NULL,
        spec TEXT NOT NULL,
        duration_s DOUBLE PRECISION,
        chunks_total INTEGER,
        result TEXT,
        error TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        lease_owner TEXT,
        lease_until DOUBLE PRECISION
    )""",
    "CREATE INDEX jobs_by_owner ON jobs (owner, created_at)",
    "CREATE INDEX jobs_by_state ON jobs (state)",
    """CREATE TABLE chunks (
        job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        start_s DOUBLE PRECISION NOT NULL,
        end_s DOUBLE PRECISION NOT NULL,
        text TEXT,
        error TEXT,
        attempts INTEGER NOT NULL,
        tokens INTEGER NOT NULL,
        finished_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (job_id, idx)
    )""",
]

# (version, statements by dialect): append, never edit a released one.
MIGRATIONS: list[tuple[int, dict[str, list[str]]]] = [
    (
        1,
        {
            "sqlite": [
                *_COMMON_V1,
                """CREATE TABLE documents (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
                    owner TEXT NOT NULL,
                    kind TEXT NOT NULL,
                    start_s REAL NOT NULL,
                    end_s REAL NOT NULL,
                    text TEXT NOT NULL
                )""",
                "CREATE INDEX documents_by_job ON documents (job_id)",
                """CREATE VIRTUAL TABLE documents_fts USING fts5(
                    text, content='documents', content_rowid='id', tokenize='porter unicode61'
                )""",
                """CREATE TRIGGER documents_ai AFTER INSERT ON documents BEGIN
                    INSERT INTO documents_fts (rowid, text) VALUES (new.id, new.text);
                END""",
                """CREATE TRIGGER documents_ad AFTER DELETE ON documents BEGIN
                    INSERT INTO documents_fts (documents_fts, rowid, text)
                    VALUES ('delete', old.id, old.text);
                END""",
            ],
            "postgresql": [
                *_COMMON_V1,
                """CREATE TABLE documents (
                    id BIGSERIAL PRIMARY KEY,
                    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
                    owner TEXT NOT NULL,
                    kind TEXT NOT NULL,
                    start_s DOUBLE PRECISION NOT NULL,
                    end_s DOUBLE PRECISION NOT NULL,
                    text TEXT NOT NULL,
                    tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED
                )""",
                "CREATE INDEX documents_by_job ON documents (job_id)",
                "CREATE INDEX documents_tsv ON documents USING GIN (tsv)",
            ],
        },
    ),
    # 2: how often a job was claimed without finishing (the poison-job rule), and the bytes of
    # media it keeps on disk (per-key storage quotas, retention).
    (
        2,
        {
            dialect: [
                "ALTER TABLE jobs ADD COLUMN claims INTEGER NOT NULL DEFAULT 0",
                "ALTER TABLE jobs ADD COLUMN media_bytes BIGINT NOT NULL DEFAULT 0",
                "ALTER TABLE jobs ADD COLUMN media_removed_at DOUBLE PRECISION",
            ]
            for dialect in ("sqlite", "postgresql")
        },
    ),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]

_JOB_COLUMNS = (
    "id, owner, task, state, video, source, spec, created_at, updated_at, duration_s, "
    "chunks_total, result, error, media_bytes, claims, media_removed_at"
)
_COUNTS = (
    "(SELECT COUNT(*) FROM chunks c WHERE c.job_id = jobs.id AND c.text IS NOT NULL), "
    "(SELECT COUNT(*) FROM chunks c WHERE c.job_id = jobs.id AND c.text IS NULL)"
)


def _job(row: Sequence[Any]) -> JobRecord:
    return JobRecord(
        id=row[0],
        owner=row[1],
        task=row[2],
        state=JobState(row[3]),
        video=row[4],
        source=row[5],
        spec=json.loads(row[6]),
        created_at=row[7],
        updated_at=row[8],
        duration_s=row[9],
        chunks_total=row[10],
        result=json.loads(row[11]) if row[11] else None,
        error=json.loads(row[12]) if row[12] else None,
        media_bytes=int(row[13]),
        claims=int(row[14]),
        media_removed_at=row[15],
        chunks_done=row[16],
        chunks_failed=row[17],
    )


def _chunk(row: Sequence[Any]) -> ChunkRecord:
    return ChunkRecord(
        job_id=row[0],
        index=row[1],
        start_s=row[2],
        end_s=row[3],
        text=row[4],
        error=json.loads(row[5]) if row[5] else None,
        attempts=row[6],
        tokens=row[7],
        finished_at=row[8],
    )


def _hit(row: Sequence[Any]) -> SearchHit:
    job_id, video, kind, start_s, end_s, text, score = row
    return SearchHit(job_id, video, kind, start_s, end_s, text, float(score))


def _dumps(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value)


def _fts5_query(text: str) -> str:
    """The user's words as FTS5 terms (each quoted: no operator or syntax error from input),
    any of them matching, ranked by BM25."""
    words = re.findall(r"\w+", text)
    return " OR ".join('"' + word + '"' for word in words)


class Store:
    """The jobs database. Thread-safe: one connection, one statement at a time."""

    dialect = "sqlite"

    def __init__(self, connect: Callable[[], Any], describe: str) -> None:
        self._connect = connect
        self.describe = describe  # the URL without its password, for messages
        self._lock = threading.Lock()
        self._conn: Any = None

    # -- connection and transactions --

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        """A cursor in a transaction (committed at the end, rolled back on an error); a broken
        connection is dropped so the next call reconnects."""
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = self._connect()
                cursor = self._conn.cursor()
                try:
                    yield cursor
                    self._conn.commit()
                except BaseException:
                    self._conn.rollback()
                    raise
                finally:
                    cursor.close()
            except self._lost_errors() as exc:
                self._drop()
                raise StoreUnavailable(
                    f"the jobs database ({self.describe}) cannot be reached: {exc}; "
                    "retry once it is back",
                    details={"retry_after_s": 2},
                ) from exc

    def _lost_errors(self) -> tuple[type[BaseException], ...]:
        return (sqlite3.OperationalError,)

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # a broken connection may fail to close; it is gone
                logger.debug("closing a broken database connection failed", exc_info=True)
            self._conn = None

    def _sql(self, statement: str) -> str:
        return statement

    def _run(self, cursor: Any, statement: str, params: Sequence[Any] = ()) -> Any:
        cursor.execute(self._sql(statement), tuple(params))
        return cursor

    def close(self) -> None:
        with self._lock:
            self._drop()

    # -- schema --

    def version(self) -> int:
        with self._tx() as cur:
            self._run(cur, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = self._run(cur, "SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def migrate(self) -> int:
        """Create the schema, or bring it up to SCHEMA_VERSION; the version now."""
        with self._tx() as cur:
            self._lock_schema(cur)
            self._run(cur, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            current = int(
                self._run(cur, "SELECT MAX(version) FROM schema_version").fetchone()[0] or 0
            )
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"the jobs database ({self.describe}) has schema version {current}, newer "
                    f"than this vidserve's {SCHEMA_VERSION}: upgrade vidserve or use another "
                    "database"
                )
            for version, statements in MIGRATIONS:
                if version > current:
                    for statement in statements[self.dialect]:
                        self._run(cur, statement)
                    self._run(cur, "INSERT INTO schema_version (version) VALUES (?)", [version])
                    logger.info("jobs database %s: schema version %d", self.describe, version)
        return max(current, SCHEMA_VERSION)

    def _lock_schema(self, cursor: Any) -> None:
        """SQLite: the write transaction is the lock (BEGIN IMMEDIATE)."""
        self._run(cursor, "SELECT 1")

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
        query = f"SELECT {_JOB_COLUMNS}, {_COUNTS} FROM jobs WHERE id = ?"
        params: list[Any] = [job_id]
        if owner is not None:
            query += " AND owner = ?"
            params.append(owner)
        with self._tx() as cur:
            row = self._run(cur, query, params).fetchone()
        return _job(row) if row else None

    def list_jobs(
        self, owner: str, limit: int, before: tuple[float, str] | None = None
    ) -> list[JobRecord]:
        """`owner`'s jobs, newest first; `before`: (created_at, id) of the last one seen."""
        query = f"SELECT {_JOB_COLUMNS}, {_COUNTS} FROM jobs WHERE owner = ?"
        params: list[Any] = [owner]
        if before is not None:
            query += " AND (created_at < ? OR (created_at = ? AND id < ?))"
            params += [before[0], before[0], before[1]]
        query += " ORDER BY created_at DESC, id DESC LIMIT ?"
        with self._tx() as cur:
            rows = self._run(cur, query, [*params, limit]).fetchall()
        return [_job(row) for row in rows]

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
                [state.value, _dumps(result), _dumps(error), time.time(), job_id, *UNFINISHED],
            ).rowcount
            if updated:
                owner = self._run(cur, "SELECT owner FROM jobs WHERE id = ?", [job_id]).fetchone()
                for start_s, end_s, text in chapters:
                    self._index(cur, job_id, owner[0], "chapter", span=(start_s, end_s), text=text)
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
                "SELECT COALESCE(SUM(CASE WHEN state IN (?, ?) THEN 1 ELSE 0 END), 0), "
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
        free = "state IN (?, ?) AND (lease_until IS NULL OR lease_until < ?)"
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
                "finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    chunk.job_id,
                    chunk.index,
                    chunk.start_s,
                    chunk.end_s,
                    chunk.text,
                    _dumps(chunk.error),
                    chunk.attempts,
                    chunk.tokens,
                    chunk.finished_at,
                ],
            )
            self._run(
                cur, "UPDATE jobs SET updated_at = ? WHERE id = ?", [time.time(), chunk.job_id]
            )
            if chunk.text:
                span = (chunk.start_s, chunk.end_s)
                self._index(cur, chunk.job_id, owner, "caption", span=span, text=chunk.text)
        return True

    def chunks(self, job_id: str, after: int = -1) -> list[ChunkRecord]:
        """The job's recorded chunks with an index above `after`, in index order."""
        with self._tx() as cur:
            rows = self._run(
                cur,
                "SELECT job_id, idx, start_s, end_s, text, error, attempts, tokens, finished_at "
                "FROM chunks WHERE job_id = ? AND idx > ? ORDER BY idx",
                [job_id, after],
            ).fetchall()
        return [_chunk(row) for row in rows]

    # -- search --

    def _index(
        self, cur: Any, job_id: str, owner: str, kind: str, *, span: Span, text: str
    ) -> None:
        self._run(
            cur,
            "INSERT INTO documents (job_id, owner, kind, start_s, end_s, text) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [job_id, owner, kind, span[0], span[1], text],
        )

    def search(
        self, owner: str, text: str, limit: int, job_id: str | None = None
    ) -> list[SearchHit]:
        """`owner`'s captions and chapters matching the words of `text`, best first (of one
        job's, given `job_id`)."""
        query = _fts5_query(text)
        if not query:
            return []
        with self._tx() as cur:
            rows = self._run(
                cur,
                "SELECT d.job_id, j.video, d.kind, d.start_s, d.end_s, d.text, "
                "-bm25(documents_fts) AS score FROM documents_fts "
                "JOIN documents d ON d.id = documents_fts.rowid JOIN jobs j ON j.id = d.job_id "
                "WHERE documents_fts MATCH ? AND d.owner = ? "
                "AND (CAST(? AS TEXT) IS NULL OR d.job_id = ?) ORDER BY score DESC LIMIT ?",
                [query, owner, job_id, job_id, limit],
            ).fetchall()
        return [_hit(row) for row in rows]


class PostgresStore(Store):
    dialect = "postgresql"

    def _lost_errors(self) -> tuple[type[BaseException], ...]:
        import psycopg

        return (psycopg.OperationalError, psycopg.InterfaceError)

    def _sql(self, statement: str) -> str:
        return statement.replace("?", "%s")

    def _lock_schema(self, cursor: Any) -> None:
        """Replicas starting together migrate one at a time (a transaction-scoped lock)."""
        self._run(cursor, "SELECT pg_advisory_xact_lock(7263517)")

    def search(
        self, owner: str, text: str, limit: int, job_id: str | None = None
    ) -> list[SearchHit]:
        words = re.findall(r"\w+", text)
        if not words:
            return []
        with self._tx() as cur:
            rows = self._run(
                cur,
                "SELECT d.job_id, j.video, d.kind, d.start_s, d.end_s, d.text, "
                "ts_rank(d.tsv, q) AS score FROM documents d JOIN jobs j ON j.id = d.job_id, "
                "to_tsquery('english', ?) q WHERE d.tsv @@ q AND d.owner = ? "
                "AND (CAST(? AS TEXT) IS NULL OR d.job_id = ?) ORDER BY score DESC LIMIT ?",
                [" | ".join(words), owner, job_id, job_id, limit],
            ).fetchall()
        return [_hit(row) for row in rows]


# --- opening ---------------------------------------------------------------------------------


def default_url(jobs: JobsSettings) -> str:
    return f"sqlite:///{jobs.resolved_data_dir() / 'vidserve.db'}"


def redact(url: str) -> str:
    """The URL without its password."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def open_store(settings: StoreSettings, jobs: JobsSettings) -> Store:
    """Connect, then create or migrate the schema. Raises StoreError saying which database and
    what to do when it cannot be used."""
    url = settings.url or default_url(jobs)
    store = _sqlite(url) if url.startswith("sqlite:///") else _postgres(url, settings)
    try:
        store.migrate()
    except StoreUnavailable as exc:
        raise StoreError(
            f"{exc.message}. Check that the database is running and that store.url (or "
            "VIDSERVE_STORE_URL) names it"
        ) from exc
    return store


def _sqlite(url: str) -> Store:
    path = Path(url.removeprefix("sqlite:///"))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create {path.parent} for the jobs database: {exc}; set jobs.data_dir or "
            "store.url to a writable place"
        ) from exc

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(path, check_same_thread=False, timeout=10.0)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    return Store(connect, f"sqlite:///{path}")


def _postgres(url: str, settings: StoreSettings) -> PostgresStore:
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - psycopg is a dependency
        raise StoreError("store.url is PostgreSQL but psycopg is not installed") from exc
    conninfo = re.sub(r"^postgres(ql)?\+\w+://", "postgresql://", url)

    def connect() -> Any:
        return psycopg.connect(conninfo, connect_timeout=max(1, round(settings.connect_timeout_s)))

    return PostgresStore(connect, redact(url))


P = ParamSpec("P")
T = TypeVar("T")


class AsyncStore:
    """The store for an event loop: each call in a worker thread."""

    def __init__(self, store: Store) -> None:
        self.sync = store

    async def call(self, method: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await asyncio.to_thread(method, *args, **kwargs)
