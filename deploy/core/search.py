"""What library search carries between deployments: texts turned into vectors by the Embedder
(unit length, so a dot product is their cosine similarity), named by the model that made them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Embedded:
    model: str  # stored with each vector: only vectors of one model are compared
    vectors: np.ndarray  # float32, one unit-length row per text

    @property
    def dimensions(self) -> int:
        return int(self.vectors.shape[1]) if self.vectors.ndim == 2 else 0
