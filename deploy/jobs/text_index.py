"""The full-text index over every caption and chapter of a job: SQLite's FTS5 (BM25 ranking)
or PostgreSQL's tsvector (ts_rank). The user's words are matched, never parsed as a query
language: no operator or syntax error can come from input. Common English words ("a", "the",
"after") are left out of the query (PostgreSQL's `english` configuration drops them too), so a
text does not match for sharing only those. Each hit says what share of the query's words it
contains (`coverage`, each word matched by the database's own stemming): hybrid ranking counts
only the full matches (jobs/fusion.py)."""

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
    if db.dialect == "postgresql":
        with db.tx() as cur:
            # The query's lexemes as PostgreSQL reads its documents ('FL-7734' is three:
            # fl-7734, fl, -7734), common words dropped by the english configuration.
            rows = db.run(
                cur,
                "SELECT tsvector_to_array(to_tsvector('english', CAST(? AS TEXT)))",
                [text[:2000]],
            ).fetchone()
        words = list(rows[0] or [])[:16]
        if not words:
            return []
        terms = ["CAST(quote_literal(CAST(? AS TEXT)) AS tsquery)" for _ in words]
        query_sql = "(" + " || ".join(terms) + ")"
        share = " + ".join(f"CAST(d.tsv @@ {term} AS INTEGER)" for term in terms)
        statement = (
            f"SELECT d.job_id, j.video, d.kind, d.start_s, d.end_s, d.text, "
            f"ts_rank(d.tsv, w.q) AS score, ({share}) AS matched "
            f"FROM documents d JOIN jobs j ON j.id = d.job_id, (SELECT {query_sql} AS q) w "
            "WHERE d.tsv @@ w.q AND d.owner = ? "
            "AND (CAST(? AS TEXT) IS NULL OR d.job_id = ?) ORDER BY score DESC LIMIT ?"
        )
        params = [*words, *words, owner, job_id, job_id, limit]  # the share's, then the query's
    else:
        words = query_words(text)
        if not words:
            return []
        # Each word quoted: an FTS5 term, never an operator; any of them matching.
        quoted = ['"' + word + '"' for word in words]
        share = " + ".join(
            "(SELECT COUNT(*) FROM documents_fts f WHERE f.rowid = d.id AND f.text MATCH ?)"
            for _ in words
        )
        statement = (
            "SELECT d.job_id, j.video, d.kind, d.start_s, d.end_s, d.text, "
            f"-bm25(documents_fts) AS score, ({share}) AS matched FROM documents_fts "
            "JOIN documents d ON d.id = documents_fts.rowid JOIN jobs j ON j.id = d.job_id "
            "WHERE documents_fts MATCH ? AND d.owner = ? "
            "AND (CAST(? AS TEXT) IS NULL OR d.job_id = ?) ORDER BY score DESC LIMIT ?"
        )
        params = [*quoted, " OR ".join(quoted), owner, job_id, job_id, limit]
    with db.tx() as cur:
        rows = db.run(cur, statement, params).fetchall()
    return [hit_of((*row[:7], row[7] / len(words))) for row in rows]


# Words too common to say what a text is about (a subset of PostgreSQL's english stop words).
STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "been",
        "being",
        "but",
        "by",
        "can",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "he",
        "her",
        "him",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "me",
        "my",
        "no",
        "not",
        "of",
        "on",
        "or",
        "our",
        "she",
        "so",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "to",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "you",
        "your",
        "after",
        "before",
        "about",
        "over",
        "under",
        "again",
    ]
)


def query_words(text: str) -> list[str]:
    """The distinct words of `text` that a search matches: common words left out, unless
    nothing else is left."""
    words = list(dict.fromkeys(w.lower() for w in re.findall(r"\w+", text)))
    kept = [w for w in words if w not in STOP_WORDS]
    return (kept or words)[:16]
