"""The jobs database's schema, versioned: MIGRATIONS by dialect (append, never edit a
released one), and how a row becomes a record."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from deploy.core.jobs import JobState
from deploy.jobs.records import ChunkRecord, JobRecord, SearchHit

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
    # 3: what was said in each chunk (the speech track), beside its caption.
    (
        3,
        {
            dialect: ["ALTER TABLE chunks ADD COLUMN transcript TEXT"]
            for dialect in ("sqlite", "postgresql")
        },
    ),
]
# 4: live streams (deploy/streams/): a stream's windows are the chunks of its library record,
# a job of task 'stream' with the stream's id; its alerts beside it.
_STREAMS_V4 = [
    """CREATE TABLE streams (
        id TEXT PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
        owner TEXT NOT NULL,
        url TEXT NOT NULL,
        spec TEXT NOT NULL,
        state TEXT NOT NULL,
        error TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        lease_owner TEXT,
        lease_until DOUBLE PRECISION,
        reconnects INTEGER NOT NULL DEFAULT 0,
        windows INTEGER NOT NULL DEFAULT 0,
        dropped INTEGER NOT NULL DEFAULT 0,
        lag_s DOUBLE PRECISION,
        next_window INTEGER NOT NULL DEFAULT 0,
        rules_state TEXT
    )""",
    "CREATE INDEX streams_by_owner ON streams (owner, created_at)",
    """CREATE TABLE alerts (
        id TEXT PRIMARY KEY,
        stream_id TEXT NOT NULL REFERENCES streams (id) ON DELETE CASCADE,
        owner TEXT NOT NULL,
        rule TEXT NOT NULL,
        window_idx INTEGER NOT NULL,
        start_s DOUBLE PRECISION NOT NULL,
        end_s DOUBLE PRECISION NOT NULL,
        fired_at DOUBLE PRECISION NOT NULL,
        delivery TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at DOUBLE PRECISION,
        last_error TEXT
    )""",
    "CREATE INDEX alerts_by_stream ON alerts (stream_id, fired_at)",
    "CREATE INDEX alerts_to_deliver ON alerts (delivery, next_attempt_at)",
]
MIGRATIONS.append((4, {dialect: list(_STREAMS_V4) for dialect in ("sqlite", "postgresql")}))
SCHEMA_VERSION = MIGRATIONS[-1][0]
STREAM_TASK = "stream"  # the task of a stream's library record in `jobs`

JOB_COLUMNS = (
    "id, owner, task, state, video, source, spec, created_at, updated_at, duration_s, "
    "chunks_total, result, error, media_bytes, claims, media_removed_at"
)
COUNTS = (
    "(SELECT COUNT(*) FROM chunks c WHERE c.job_id = jobs.id AND c.text IS NOT NULL), "
    "(SELECT COUNT(*) FROM chunks c WHERE c.job_id = jobs.id AND c.text IS NULL)"
)


def job_of(row: Sequence[Any]) -> JobRecord:
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


def chunk_of(row: Sequence[Any]) -> ChunkRecord:
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
        transcript=row[9],
    )


def hit_of(row: Sequence[Any]) -> SearchHit:
    job_id, video, kind, start_s, end_s, text, score, *more = row
    coverage = float(more[0]) if more else 1.0
    return SearchHit(job_id, video, kind, start_s, end_s, text, float(score), coverage)


def dumps(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value)
