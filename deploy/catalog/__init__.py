"""The model catalog (`models.yaml`): Hugging Face ids <-> Ollama tags, and who can see images.

Data, not code: add a model by adding an entry to models.yaml. `vision_of` answers for any model
source vidserve may be given, including local directories (from their `config.json`).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

CATALOG_FILE = Path(__file__).with_name("models.yaml")
DEFAULT_VISION_HF_ID = "Qwen/Qwen2.5-VL-7B-Instruct"
DEFAULT_VISION_OLLAMA_TAG = "qwen2.5vl:7b"


class CatalogEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    hf_id: str
    ollama: str | None
    ollama_aliases: tuple[str, ...] = ()
    vision: bool
    quantized_of: str | None = Field(default=None, description="The unquantized model's HF id.")


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    models: tuple[CatalogEntry, ...]

    def by_hf_id(self, hf_id: str) -> CatalogEntry | None:
        wanted = hf_id.lower()
        return next((m for m in self.models if m.hf_id.lower() == wanted), None)

    def by_ollama_tag(self, tag: str) -> CatalogEntry | None:
        """The unquantized entry for an Ollama tag (`qwen2.5vl` means `qwen2.5vl:latest`)."""
        wanted = normalize_tag(tag)
        for entry in self.models:
            names = [entry.ollama, *entry.ollama_aliases] if entry.ollama else []
            if entry.quantized_of is None and wanted in {normalize_tag(n) for n in names}:
                return entry
        return None

    def ollama_tag_for(self, hf_id: str) -> str | None:
        entry = self.by_hf_id(hf_id)
        return entry.ollama if entry else None

    def hf_id_for(self, tag: str) -> str | None:
        entry = self.by_ollama_tag(tag)
        return entry.hf_id if entry else None


def normalize_tag(tag: str) -> str:
    """Ollama's own rule: a name without a tag is `:latest`."""
    tag = tag.strip().lower()
    return tag if ":" in tag else f"{tag}:latest"


@lru_cache(maxsize=1)
def catalog() -> Catalog:
    return Catalog.model_validate(yaml.safe_load(CATALOG_FILE.read_text()))


def hf_model_vision(source: str) -> bool | None:
    """Whether a vLLM model source sees images: catalog first, then a local `config.json`.

    None when unknown (an HF id outside the catalog): the engine itself then decides."""
    entry = catalog().by_hf_id(source)
    if entry is not None:
        return entry.vision
    config = Path(source).expanduser() / "config.json"
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    return "vision_config" in data


def ollama_model_vision(tag: str) -> bool | None:
    """Whether an Ollama tag sees images per the catalog; None when the catalog does not know it
    (the Ollama deployment then asks the server's `/api/show` capabilities)."""
    entry = catalog().by_ollama_tag(tag)
    return entry.vision if entry else None
