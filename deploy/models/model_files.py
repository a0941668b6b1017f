"""Where a model's files are and whether they are all there, for each kind of model source:
a Hugging Face id (looked up in the local Hugging Face cache), a local directory, or a
directory of that cache (`.../models--Org--Name/snapshots/<revision>`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.config.settings import ModelSourceKind, classify_model_source

TOKENIZER_FILES = (("tokenizer.json",), ("vocab.json", "merges.txt"), ("tokenizer.model",))
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


@dataclass(frozen=True)
class ModelFiles:
    source: str
    kind: ModelSourceKind
    directory: Path | None  # None: an HF id not in the local cache
    missing: list[str] = field(default_factory=list)
    config: dict[str, Any] | None = None

    @property
    def complete(self) -> bool:
        return self.directory is not None and not self.missing


def cached_snapshot(repo_id: str) -> Path | None:
    """The local Hugging Face cache's snapshot of `repo_id` (HF_HOME / HF_HUB_CACHE honoured)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json")
    return Path(found).parent if isinstance(found, str) else None


def locate(source: str) -> ModelFiles:
    """Raises ValueError when `source` is neither an HF id nor a directory."""
    kind = classify_model_source(source)
    if kind is ModelSourceKind.HF_ID:
        directory = cached_snapshot(source)
        if directory is None:
            return ModelFiles(source, kind, None)
    else:
        directory = Path(source).expanduser()
        if not directory.is_dir():
            return ModelFiles(source, kind, directory, missing=["the directory itself"])
    config = read_config(directory)
    return ModelFiles(source, kind, directory, missing_files(directory, config), config)


def read_config(directory: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def missing_files(directory: Path, config: dict[str, Any] | None) -> list[str]:
    """What vLLM needs and the directory lacks (a broken cache symlink counts as missing)."""
    missing = [] if config is not None else ["config.json"]
    if not any(all((directory / name).exists() for name in group) for group in TOKENIZER_FILES):
        missing.append("tokenizer (tokenizer.json, or vocab.json and merges.txt)")
    missing.extend(_missing_weights(directory))
    vision = config is not None and "vision_config" in config
    processors = ("preprocessor_config.json", "processor_config.json")
    if vision and not any((directory / name).exists() for name in processors):
        missing.append("preprocessor_config.json (the image and video processor)")
    return missing


def _missing_weights(directory: Path) -> list[str]:
    for index_name in WEIGHT_INDEXES:
        index = directory / index_name
        if index.exists():
            try:
                shards = set(json.loads(index.read_text())["weight_map"].values())
            except (OSError, ValueError, KeyError, AttributeError):
                return [f"{index_name} (unreadable)"]
            return sorted(shard for shard in shards if not (directory / shard).exists())
    if any(directory.glob("*.safetensors")) or (directory / "pytorch_model.bin").exists():
        return []
    return ["weights (*.safetensors)"]
