"""The full-text index over every caption and chapter of a job: SQLite's FTS5 (BM25 ranking)
or PostgreSQL's tsvector (ts_rank). The user's words are matched, never parsed as a query
language: no operator or syntax error can come from input."""

from __future__ import annotations

import re
from typing import Any

from deploy.jobs.database import Database
from deploy.jobs.records import SearchHit, Span
from deploy.jobs.schema import hit_of


def add(
    db: Database, cur: Any, *, job_id: str, owner: str, kind: str, span: Span, text: str
) -> None:
    """Index `text` (a "caption" or "chapter" of `span`) in the transaction of `cur`."""
    db.run(
        cur,
        "INSERT INTO documents (job_id, owner, kind, start_s, end_s, text) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [job_id, owner, kind, span[0], span[1], text],
    )


def search(db: Database, owner: str, text: str, limit: int, job_id: str | None) -> list[SearchHit]:
    """`owner`'s documents matching any word of `text`, best first (of one job's, given
    `job_id`)."""
    words = re.findall(r"\w+", text)
    if not words:
        return []
    if db.dialect == "postgresql":
        statement = (
            "SELECT d.job_id, j.video, d.kind, d.start_s, d.end_s, d.text, "
            "ts_rank(d.tsv, q) AS score FROM documents d JOIN jobs j ON j.id = d.job_id, "
            "to_tsquery('english', ?) q WHERE d.tsv @@ q AND d.owner = ? "
            "AND (CAST(? AS TEXT) IS NULL OR d.job_id = ?) ORDER BY score DESC LIMIT ?"
        )
        query = " | ".join(words)
    else:
        statement = (
            "SELECT d.job_id, j.video, d.kind, d.start_s, d.end_s, d.text, "
            "-bm25(documents_fts) AS score FROM documents_fts "
            "JOIN documents d ON d.id = documents_fts.rowid JOIN jobs j ON j.id = d.job_id "
            "WHERE documents_fts MATCH ? AND d.owner = ? "
            "AND (CAST(? AS TEXT) IS NULL OR d.job_id = ?) ORDER BY score DESC LIMIT ?"
        )
        # Each word quoted: an FTS5 term, never an operator; any of them matching.
        query = " OR ".join('"' + word + '"' for word in words)
    with db.tx() as cur:
        rows = db.run(cur, statement, [query, owner, job_id, job_id, limit]).fetchall()
    return [hit_of(row) for row in rows]
