"""Configuration of who answers: the vLLM engine (`llm`), generation limits, the backend
order and circuit breaker (`backends`), and the Ollama fallback (`ollama`)."""

from __future__ import annotations

import dataclasses
import difflib
import re
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from deploy.config import env
from deploy.config.strict import StrictModel

# Engine arguments vidserve sets itself: given in `engine_kwargs` they would be ambiguous.
_FIRST_CLASS_ENGINE_ARGS = (
    "model",
    "max_model_len",
    "gpu_memory_utilization",
    "tensor_parallel_size",
    "dtype",
    "trust_remote_code",
    "video_pruning_rate",
)


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
    trust_remote_code: bool = Field(
        default=False,
        description="Run code shipped inside the model's repository (off: none of the catalog's "
        "models needs it; turn it on only for a model whose code you trust).",
    )
    video_pruning_rate: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="Share of each video's tokens vLLM drops as redundant (Efficient Video "
        "Sampling, Qwen2.5-VL and Qwen3-VL): fewer prompt tokens and a cheaper prefill, at some "
        "detail lost between similar frames. 0: off. One value for the engine (vLLM cannot "
        "change it per request).",
    )
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
            **({"video_pruning_rate": self.video_pruning_rate} if self.video_pruning_rate else {}),
            **self.engine_kwargs,
        }


class GenerationSettings(StrictModel):
    """Defaults and limits of the answer's generation."""

    default_max_tokens: int = Field(default=512, ge=1, description="Tokens when none are asked.")
    max_tokens_limit: int = Field(default=4096, ge=1, description="Most tokens a request may ask.")
    max_prompt_chars: int = Field(default=32_000, ge=1, description="Longest prompt text accepted.")


class Backend(StrEnum):
    VLLM = "vllm"
    OLLAMA = "ollama"


class Fallback(StrEnum):
    OLLAMA = "ollama"
    NONE = "none"


class CircuitBreakerSettings(StrictModel):
    """When to stop sending requests to a failing backend, and when to try it again."""

    failure_threshold: int = Field(
        default=3, ge=1, description="Consecutive failures that open the circuit."
    )
    open_s: float = Field(
        default=15.0, gt=0, description="Seconds the circuit stays open before a probe."
    )
    probe_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description="How long the half-open probe (the backend's readiness "
        "check) may take before it counts as failed.",
    )


class BackendPolicy(StrictModel):
    """Who answers: `primary` first; `fallback` when the primary cannot."""

    primary: Backend = Field(
        default=Backend.VLLM, description="vllm or ollama. VIDSERVE_BACKEND overrides."
    )
    fallback: Fallback = Field(
        default=Fallback.OLLAMA, description="ollama or none. VIDSERVE_FALLBACK overrides."
    )
    circuit_breaker: CircuitBreakerSettings = Field(default_factory=CircuitBreakerSettings)
    assign_timeout_s: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="A request the primary's router has not handed to a replica within this "
        "(none running: dead, starting, draining; or every one full) goes to the fallback; "
        "it never waits for a replica to be started. Not applied to the last backend.",
    )

    @model_validator(mode="after")
    def _distinct(self) -> BackendPolicy:
        if self.primary.value == self.fallback.value:
            raise ValueError(
                f"backends.fallback is {self.fallback.value!r}, the same as backends.primary: "
                "set fallback: none"
            )
        return self

    @property
    def order(self) -> tuple[Backend, ...]:
        """The backends in the order they are tried."""
        if self.fallback is Fallback.NONE:
            return (self.primary,)
        return (self.primary, Backend(self.fallback.value))


class OllamaSettings(StrictModel):
    """The Ollama deployment: a thin client of an Ollama server."""

    host: str = Field(
        default="http://127.0.0.1:11434", description="Ollama server. OLLAMA_HOST overrides."
    )
    model: str | None = Field(
        default=None,
        description="Ollama tag, e.g. qwen2.5vl:7b. OLLAMA_MODEL overrides. Default: the tag of "
        "llm.model in the catalog (deploy/config/models.yaml), else qwen2.5vl:7b.",
    )
    num_ctx: int | None = Field(
        default=8192, ge=256, description="Context window Ollama allocates (its default is small)."
    )
    keep_alive: str | float | None = Field(
        default="30m", description="How long Ollama keeps the model loaded after a request."
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Any other Ollama option (see ollama.Options)."
    )
    request_timeout_s: float = Field(
        default=120.0, gt=0, description="Longest time one Ollama answer may take."
    )
    connect_timeout_s: float = Field(
        default=3.0, gt=0, description="How long to wait for a connection to Ollama."
    )
    pull_on_start: bool = Field(
        default=False, description="Pull the model when the replica starts (progress is logged)."
    )
    jpeg_quality: int = Field(default=90, ge=1, le=100, description="Quality of frames sent.")

    @field_validator("options")
    @classmethod
    def _known_options(cls, value: dict[str, Any]) -> dict[str, Any]:
        from ollama import Options

        known = set(Options.model_fields)
        for name in value:
            if name in {"num_ctx", "temperature", "num_predict"}:
                raise ValueError(
                    f"ollama.options.{name} is set by vidserve (num_ctx: ollama.num_ctx; "
                    "temperature and num_predict: per request)"
                )
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"unknown Ollama option {name!r}{hint}")
        return value

    @field_validator("host")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(
                f"ollama.host must be an http(s) URL like http://127.0.0.1:11434, got {value!r}"
            )
        return value.rstrip("/")
