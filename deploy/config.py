"""The application's configuration: strict pydantic models, described field by field.

`AppArgs` is what `serve_config.yaml` puts under `args:`; `build_app` validates it. Unknown keys
are errors (`extra="forbid"`) and each error says what to change.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from deploy import env

# Engine arguments vidserve sets itself: given in `engine_kwargs` they would be ambiguous.
_FIRST_CLASS_ENGINE_ARGS = (
    "model",
    "max_model_len",
    "gpu_memory_utilization",
    "tensor_parallel_size",
    "dtype",
    "trust_remote_code",
)


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Accelerator(StrEnum):
    AUTO = "auto"
    GPU = "gpu"
    CPU = "cpu"


class ModelSourceKind(StrEnum):
    HF_ID = "hf_id"
    LOCAL_DIR = "local_dir"
    HF_CACHE_SNAPSHOT = "hf_cache_snapshot"


_HF_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
_SNAPSHOT = re.compile(r"models--(?P<org>[^/]+?)--(?P<name>[^/]+)/snapshots/[^/]+/?$")


def classify_model_source(source: str) -> ModelSourceKind:
    """Tell a Hugging Face id from a local directory or a Hugging Face cache snapshot."""
    if _SNAPSHOT.search(source.replace("\\", "/")):
        return ModelSourceKind.HF_CACHE_SNAPSHOT
    if Path(source).expanduser().is_dir() or source.startswith(("/", ".", "~")):
        return ModelSourceKind.LOCAL_DIR
    if _HF_ID.match(source):
        return ModelSourceKind.HF_ID
    raise ValueError(
        f"model {source!r} is neither a Hugging Face id like 'Qwen/Qwen2.5-VL-7B-Instruct' nor an "
        "existing directory; set VLLM_MODEL_PATH (or llm.model) to one of those"
    )


def default_model_id(source: str) -> str:
    """The name clients see for a model source: the HF id, or the directory's name."""
    match = _SNAPSHOT.search(source.replace("\\", "/"))
    if match:
        return f"{match['org']}/{match['name']}"
    if classify_model_source(source) is ModelSourceKind.HF_ID:
        return source
    return Path(source).expanduser().resolve().name


@lru_cache(maxsize=1)
def known_vllm_engine_args() -> frozenset[str] | None:
    """Names vLLM's `AsyncEngineArgs` accepts, or None when vLLM is not installed here."""
    try:
        from vllm.engine.arg_utils import AsyncEngineArgs
    except ImportError:
        return None
    return frozenset(field.name for field in dataclasses.fields(AsyncEngineArgs))


class LLMSettings(StrictModel):
    """The vLLM engine and the replicas that run it (Ray Serve LLM)."""

    model: str = Field(
        default=env.DEFAULT_MODEL,
        description="Hugging Face id, local model directory or HF cache snapshot directory. "
        "VLLM_MODEL_PATH overrides it.",
    )
    model_id: str | None = Field(
        default=None,
        description="Name clients see in responses and /v1/models (default: derived from model).",
    )
    accelerator: Accelerator = Field(
        default=Accelerator.AUTO,
        description="gpu, cpu, or auto (gpu when Ray sees a GPU). VIDSERVE_ACCELERATOR overrides.",
    )
    max_model_len: int = Field(default=8192, ge=256, description="Context length in tokens.")
    gpu_memory_utilization: float = Field(
        default=0.80, gt=0.0, le=1.0, description="Share of GPU memory vLLM may take."
    )
    tensor_parallel_size: int = Field(
        default=1, ge=1, le=64, description="GPUs per replica (Ray places them in one group)."
    )
    dtype: Literal["auto", "half", "float16", "bfloat16", "float", "float32"] = Field(
        default="half", description="Weights and activations dtype (float32 on CPU)."
    )
    trust_remote_code: bool = Field(default=True, description="Allow model repos' own code.")
    engine_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Any other vLLM engine argument (AsyncEngineArgs field), passed unchanged.",
    )
    request_timeout_s: float = Field(
        default=300.0, gt=0, description="Longest time one inference may take before a 504."
    )

    @field_validator("engine_kwargs")
    @classmethod
    def _known_engine_args(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if name in _FIRST_CLASS_ENGINE_ARGS:
                raise ValueError(
                    f"engine_kwargs.{name} duplicates llm.{name}: set llm.{name} instead"
                )
        known = known_vllm_engine_args()
        if known is None:
            return value
        unknown = sorted(set(value) - known)
        if unknown:
            hints = []
            for name in unknown:
                close = difflib.get_close_matches(name, known, n=1)
                hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ValueError(
                "unknown vLLM engine argument(s) in engine_kwargs: "
                + ", ".join(hints)
                + "; see `python -m vllm.entrypoints.openai.api_server --help` for valid ones"
            )
        return value

    @field_validator("model")
    @classmethod
    def _model_is_classifiable(cls, value: str) -> str:
        classify_model_source(value)
        return value

    @property
    def served_model_id(self) -> str:
        return self.model_id or default_model_id(self.model)

    def vllm_engine_kwargs(self) -> dict[str, Any]:
        """All engine arguments for Ray Serve LLM's `engine_kwargs`."""
        return {
            "max_model_len": self.max_model_len,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "tensor_parallel_size": self.tensor_parallel_size,
            "dtype": self.dtype,
            "trust_remote_code": self.trust_remote_code,
            **self.engine_kwargs,
        }


class ExtractionSettings(StrictModel):
    """Frame extraction on CPU replicas: sampling defaults, limits and the pixel budget."""

    default_num_frames: int = Field(default=16, ge=1, description="Frames when none are asked.")
    max_num_frames: int = Field(default=64, ge=1, description="Most frames one request may ask.")
    max_fps: float = Field(
        default=4.0, gt=0, description="Highest sampling rate a request may ask."
    )
    max_upload_bytes: int = Field(
        default=512 * 1024 * 1024, ge=1024, description="Largest upload accepted (413 above it)."
    )
    patch_factor: int = Field(
        default=28, ge=1, description="Frame sides are multiples of this (patch 14 x merge 2)."
    )
    min_pixels: int = Field(default=128 * 28 * 28, ge=1, description="Fewest pixels per frame.")
    max_pixels: int = Field(default=768 * 28 * 28, ge=1, description="Most pixels per frame.")
    total_pixels: int = Field(
        default=24576 * 28 * 28,
        ge=1,
        description="Pixel budget over all frames of a request; frames shrink to fit it.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ExtractionSettings:
        if self.default_num_frames > self.max_num_frames:
            raise ValueError(
                f"default_num_frames ({self.default_num_frames}) exceeds max_num_frames "
                f"({self.max_num_frames}): lower the first or raise the second"
            )
        if self.min_pixels > self.max_pixels:
            raise ValueError(
                f"min_pixels ({self.min_pixels}) exceeds max_pixels ({self.max_pixels})"
            )
        return self


class GenerationSettings(StrictModel):
    """Defaults and limits of the answer's generation."""

    default_max_tokens: int = Field(default=512, ge=1, description="Tokens when none are asked.")
    max_tokens_limit: int = Field(default=4096, ge=1, description="Most tokens a request may ask.")
    max_prompt_chars: int = Field(default=32_000, ge=1, description="Longest prompt text accepted.")


class AppArgs(StrictModel):
    """`args:` of the vidserve application in serve_config.yaml."""

    llm: LLMSettings = Field(default_factory=LLMSettings)
    extraction: ExtractionSettings = Field(default_factory=ExtractionSettings)
    generation: GenerationSettings = Field(default_factory=GenerationSettings)

    @classmethod
    def from_args(cls, args: dict[str, Any] | None) -> AppArgs:
        """Validate `args`, then apply the environment overrides (env.py)."""
        data: dict[str, Any] = dict(args or {})
        llm = dict(data.get("llm") or {})
        if (path := env.model_path()) is not None:
            llm["model"] = path
        if (acc := env.accelerator()) is not None:
            llm["accelerator"] = acc
        data["llm"] = llm
        return cls.model_validate(data)
