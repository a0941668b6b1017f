"""The application's configuration: `AppArgs`, what `serve_config.yaml` puts under `args:`.

`build_app` validates it. Unknown keys are errors (`extra="forbid"`) and each error says what
to change. The sections live by responsibility: backend_settings.py (who answers),
request_settings.py (what comes in), job_settings.py (long-video jobs); they are re-exported
here so `from deploy.config.settings import ...` names every section.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import Field, model_validator

from deploy.config import env
from deploy.config.backend_settings import (
    Accelerator,
    Backend,
    BackendPolicy,
    CircuitBreakerSettings,
    Fallback,
    GenerationSettings,
    LLMSettings,
    ModelSourceKind,
    OllamaSettings,
    classify_model_source,
    default_model_id,
    known_vllm_engine_args,
)
from deploy.config.job_settings import JobsSettings, StoreSettings
from deploy.config.request_settings import (
    MIN_API_KEY_CHARS,
    AuthSettings,
    ExtractionSettings,
    HttpSettings,
    UrlFetchSettings,
)
from deploy.config.search_settings import SearchSettings
from deploy.config.speech_settings import SpeechSettings
from deploy.config.stream_settings import StreamsSettings
from deploy.config.strict import StrictModel

__all__ = [
    "MIN_API_KEY_CHARS",
    "Accelerator",
    "AppArgs",
    "AuthSettings",
    "Backend",
    "BackendPolicy",
    "CircuitBreakerSettings",
    "ExtractionSettings",
    "Fallback",
    "GenerationSettings",
    "HttpSettings",
    "JobsSettings",
    "LLMSettings",
    "ModelSourceKind",
    "OllamaSettings",
    "SpeechSettings",
    "StoreSettings",
    "StreamsSettings",
    "StrictModel",
    "UrlFetchSettings",
    "active_env_overrides",
    "classify_model_source",
    "default_model_id",
    "known_vllm_engine_args",
]

# Room in a JSON body for what surrounds its media (messages, options).
JSON_OVERHEAD_BYTES = 1024 * 1024
# What a request body costs an ingress in memory per byte received, as api/guard.py counts it
# (measured: tests/integration/config/test_ingress_memory.py). JSON: the bytes, the parsed
# text and the media decoded from its base64. Multipart: the file read from its spool and the
# copy handed to the extractor.
JSON_BODY_MEMORY_FACTOR = 3
MULTIPART_BODY_MEMORY_FACTOR = 2


def _ollama_host_url() -> str | None:
    host = env.ollama_host()
    return host if host is None or "://" in host else f"http://{host}"


# (section, key) of AppArgs that an environment variable overrides: the variable (as
# `vidserve config` names the origin of a value) and its reader (env.py).
_ENV_OVERRIDES: dict[tuple[str, str], tuple[str, Callable[[], str | None]]] = {
    ("llm", "model"): ("VLLM_MODEL_PATH", env.model_path),
    ("llm", "accelerator"): ("VIDSERVE_ACCELERATOR", env.accelerator),
    ("backends", "primary"): ("VIDSERVE_BACKEND", env.primary_backend),
    ("backends", "fallback"): ("VIDSERVE_FALLBACK", env.fallback_backend),
    ("ollama", "host"): ("OLLAMA_HOST", _ollama_host_url),
    ("ollama", "model"): ("OLLAMA_MODEL", env.ollama_model),
    ("store", "url"): ("VIDSERVE_STORE_URL", env.store_url),
    ("speech", "model"): ("VIDSERVE_ASR_MODEL", env.asr_model),
    ("search", "model"): ("VIDSERVE_EMBEDDING_MODEL", env.embedding_model),
    ("auth", "api_keys_file"): (
        "VIDSERVE_API_KEYS_FILE",
        lambda: str(path) if (path := env.api_keys_file()) else None,
    ),
}


def active_env_overrides() -> dict[tuple[str, str], str]:
    """(section, key) -> the environment variable that overrides it now."""
    return {key: name for key, (name, read) in _ENV_OVERRIDES.items() if read() is not None}


class AppArgs(StrictModel):
    """`args:` of the vidserve application in serve_config.yaml."""

    backends: BackendPolicy = Field(default_factory=BackendPolicy)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    ollama: OllamaSettings = Field(default_factory=OllamaSettings)
    extraction: ExtractionSettings = Field(default_factory=ExtractionSettings)
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    url_fetch: UrlFetchSettings = Field(default_factory=UrlFetchSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    jobs: JobsSettings = Field(default_factory=JobsSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    speech: SpeechSettings = Field(default_factory=SpeechSettings)
    search: SearchSettings = Field(default_factory=SearchSettings)
    streams: StreamsSettings = Field(default_factory=StreamsSettings)

    @property
    def ollama_model(self) -> str:
        """`ollama.model`, else the catalog's tag for `llm.model`, else qwen2.5vl:7b."""
        from deploy.config.catalog import DEFAULT_VISION_OLLAMA_TAG, catalog

        return (
            self.ollama.model
            or catalog().ollama_tag_for(self.llm.model)
            or DEFAULT_VISION_OLLAMA_TAG
        )

    def model_of(self, backend: Backend) -> str:
        return self.llm.served_model_id if backend is Backend.VLLM else self.ollama_model

    def vision_of(self, backend: Backend) -> bool | None:
        """Whether `backend`'s model sees images: True, False, or None when unknown here."""
        from deploy.config.catalog import hf_model_vision, ollama_model_vision

        if backend is Backend.VLLM:
            return hf_model_vision(self.llm.model)
        return ollama_model_vision(self.ollama_model)

    @model_validator(mode="after")
    def _frames_fit_the_models_patches(self) -> AppArgs:
        """Frames sized for the served model's patches (Qwen2.x-VL 28, Qwen3-VL 32) unless
        `extraction.patch_factor` is set: otherwise its processor resizes every frame again."""
        from deploy.config.catalog import frame_patch_factor

        if "patch_factor" in self.extraction.model_fields_set:
            return self
        factor = frame_patch_factor(self.llm.model)
        if factor is not None and factor != self.extraction.patch_factor:
            fitted = self.extraction.model_copy(update={"patch_factor": factor})
            object.__setattr__(self, "extraction", fitted)  # frozen: set once, while validating
        return self

    @model_validator(mode="after")
    def _fallback_sees_what_primary_sees(self) -> AppArgs:
        order = self.backends.order
        if len(order) < 2:
            return self
        primary, fallback = order
        if self.vision_of(primary) is not False and self.vision_of(fallback) is False:
            raise ValueError(
                f"the fallback model {self.model_of(fallback)!r} cannot take images or video, "
                f"but the primary {self.model_of(primary)!r} can: the fallback would fail every "
                "video request. Set ollama.model to a vision model such as qwen2.5vl:7b, or "
                "backends.fallback: none"
            )
        return self

    @property
    def max_json_body_bytes(self) -> int:
        """The largest JSON body a route takes: an upload's worth of base64, and the JSON."""
        return int(self.extraction.max_upload_bytes * 4 / 3) + JSON_OVERHEAD_BYTES

    @property
    def max_inflight_bytes_per_client(self) -> int:
        """http.max_inflight_bytes_per_client, or one largest request's worth when unset."""
        share = self.http.max_inflight_bytes_per_client
        return share if share is not None else self.max_json_body_bytes * JSON_BODY_MEMORY_FACTOR

    @model_validator(mode="after")
    def _budget_holds_the_largest_body(self) -> AppArgs:
        needed = self.max_json_body_bytes * JSON_BODY_MEMORY_FACTOR
        share = self.http.max_inflight_bytes_per_client
        if share is not None and share > self.http.max_inflight_bytes:
            raise ValueError(
                f"http.max_inflight_bytes_per_client ({share}) is more than the whole budget, "
                f"http.max_inflight_bytes ({self.http.max_inflight_bytes}): lower it"
            )
        if share is not None and share < needed:
            raise ValueError(
                f"http.max_inflight_bytes_per_client ({share}) cannot hold one largest request "
                f"({needed} bytes: extraction.max_upload_bytes as base64 JSON, counted "
                f"{JSON_BODY_MEMORY_FACTOR}x): raise it to at least {needed}, lower "
                "extraction.max_upload_bytes, or unset it (one largest request)"
            )
        if self.http.max_inflight_bytes < needed:
            raise ValueError(
                f"http.max_inflight_bytes ({self.http.max_inflight_bytes}) cannot hold one "
                f"largest request ({needed} bytes: extraction.max_upload_bytes as base64 JSON, "
                f"counted {JSON_BODY_MEMORY_FACTOR}x): raise it to at least {needed} or lower "
                "extraction.max_upload_bytes"
            )
        return self

    @model_validator(mode="after")
    def _job_merges_fit_the_context(self) -> AppArgs:
        """A merge request must hold two texts, or the aggregation tree would not shrink."""
        from deploy.core.tokens import LINE_TOKENS, merge_budget

        jobs = self.jobs
        budget = merge_budget(self.llm.max_model_len, jobs.summary_max_tokens)
        needed = 2 * (max(jobs.caption_max_tokens, jobs.summary_max_tokens) + LINE_TOKENS)
        if budget < needed:
            raise ValueError(
                f"jobs: llm.max_model_len ({self.llm.max_model_len}) leaves {budget} tokens for "
                f"a merge request's captions, fewer than two captions or summaries need "
                f"({needed}): lower jobs.caption_max_tokens / jobs.summary_max_tokens or raise "
                "llm.max_model_len"
            )
        return self

    @classmethod
    def from_args(cls, args: dict[str, Any] | None) -> AppArgs:
        """Validate `args`, then apply the environment overrides (env.py)."""
        data: dict[str, Any] = dict(args or {})
        for (section, key), (_, read) in _ENV_OVERRIDES.items():
            if (value := read()) is not None:
                data[section] = {**(data.get(section) or {}), key: value}
        return cls.model_validate(data)
