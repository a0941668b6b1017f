"""The application's configuration: strict pydantic models, described field by field.

`AppArgs` is what `serve_config.yaml` puts under `args:`; `build_app` validates it. Unknown keys
are errors (`extra="forbid"`) and each error says what to change.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from deploy.config import env

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
    trust_remote_code: bool = Field(
        default=False,
        description="Run code shipped inside the model's repository (off: none of the catalog's "
        "models needs it; turn it on only for a model whose code you trust).",
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
    cache_max_bytes: int = Field(
        default=512 * 1024 * 1024,
        ge=0,
        description="Frames kept per extractor replica for repeated questions (0: no cache).",
    )
    scene_threshold: float = Field(
        default=0.2, gt=0, le=1, description="Scene sampling: mean frame difference of a cut."
    )
    scene_min_gap_s: float = Field(
        default=1.0, ge=0, description="Scene sampling: fewest seconds between chosen frames."
    )
    scene_analysis_fps: float = Field(
        default=4.0, gt=0, description="Scene sampling: frames per second compared for cuts."
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
    # Decoded-size limits: what a small file may cost to decode (video/limits.py). Checked from
    # the header before decoding and again while decoding.
    max_source_pixels: int = Field(
        default=7680 * 4320,
        ge=64 * 64,
        description="Most pixels (width x height) of a source image or video frame: 8K by "
        "default. A 1 MB PNG can declare 20000x20000 (1.2 GB decoded): 413 above this.",
    )
    max_duration_s: float = Field(
        default=3 * 3600.0,
        gt=0,
        description="Longest video accepted (413 above it): indexing reads every packet.",
    )
    max_source_frames: int = Field(
        default=3 * 3600 * 60,
        ge=1,
        description="Most frames in a video, or images in a frame list (413 above it): "
        "3 hours at 60 fps by default.",
    )
    max_decode_pixels: int = Field(
        default=20_000_000_000,
        ge=1,
        description="Decode work one request may cost: frames decoded x pixels per frame "
        "(about 10,000 1080p frames, some 40 s of a core). 413 above it: ask fewer frames or a "
        "shorter window.",
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


class HttpSettings(StrictModel):
    """What one ingress replica lets in: body limits, memory in flight, slow clients
    (api/guard.py). Per replica: the worst case of a replica is stated from these (README)."""

    max_inflight_bytes: int = Field(
        default=3 * 1024 * 1024 * 1024,
        ge=1024 * 1024,
        description="Request bytes one ingress replica holds at once (bodies as declared or as "
        "they arrive, with what is made of them: a JSON body 3x, an upload 2x). A request "
        "that would pass it gets 503 overloaded with Retry-After at once, nothing buffered.",
    )
    max_inflight_bytes_per_client: int | None = Field(
        default=None,
        ge=1024 * 1024,
        description="Of max_inflight_bytes, what one client (its API key, else its address) "
        "may hold; past it 429 client_bytes_in_flight. Unset: one largest request's worth "
        "(a base64 JSON body of extraction.max_upload_bytes, counted 3x).",
    )
    retry_after_s: int = Field(
        default=2, ge=1, description="Retry-After (seconds) of a 503 overloaded or a 429."
    )
    readiness_cache_s: float = Field(
        default=1.0,
        ge=0,
        le=30,
        description="/readyz answers from one backend check for this long (one check at a "
        "time, however many probes): probes never fill the backends' slots.",
    )
    max_json_depth: int = Field(
        default=64,
        ge=4,
        le=512,
        description="Deepest nesting of arrays/objects in a JSON body (400 above it). A "
        "response_format schema is the deepest thing a client sends.",
    )
    min_body_bytes_per_s: int = Field(
        default=16 * 1024,
        ge=1,
        description="Slow-client guard: a body arriving slower than this over body_rate_window_s "
        "is cut with 408, so a trickling client cannot hold a slot.",
    )
    body_rate_window_s: float = Field(
        default=20.0, gt=0, description="Seconds over which min_body_bytes_per_s is measured."
    )
    spool_threshold_bytes: int = Field(
        default=1024 * 1024,
        ge=0,
        description="An uploaded file larger than this is spooled to a temporary file while "
        "the form is parsed, not kept in memory.",
    )


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


class UrlFetchSettings(StrictModel):
    """Fetching media by URL: caps, and the SSRF guard (private addresses refused by default)."""

    max_bytes: int = Field(
        default=512 * 1024 * 1024, ge=1024, description="Largest download; it stops there (413)."
    )
    timeout_s: float = Field(default=60.0, gt=0, description="Longest a whole download may take.")
    connect_timeout_s: float = Field(default=10.0, gt=0, description="Per connection attempt.")
    max_redirects: int = Field(default=3, ge=0, le=10, description="Redirects followed at most.")
    allow_hosts: tuple[str, ...] = Field(
        default=(),
        description="Trusted hosts (`name` or `name:port`) fetched even at private addresses.",
    )
    allow_cidrs: tuple[str, ...] = Field(
        default=(),
        description="Trusted networks (e.g. 10.20.0.0/16) fetched even though they are private.",
    )
    local_dir: Path | None = Field(
        default=None,
        description="Directory whose files `file://` URLs may name (a shared volume); unset: off.",
    )

    @field_validator("allow_cidrs")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        import ipaddress

        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(
                    f"url_fetch.allow_cidrs: {cidr!r} is not a network like 10.0.0.0/8"
                ) from None
        return value


class AuthSettings(StrictModel):
    """Bearer-token API keys. None configured anywhere: the API is open (local use)."""

    api_keys: tuple[SecretStr, ...] = Field(
        default=(), description="Accepted keys (prefer api_keys_file or VIDSERVE_API_KEYS)."
    )
    api_keys_file: Path | None = Field(
        default=None,
        description="A file with one key per line ('#' comments), e.g. a mounted Secret; "
        "VIDSERVE_API_KEYS_FILE overrides.",
    )
    open_paths: tuple[str, ...] = Field(
        default=("/healthz", "/readyz", "/openapi.json", "/", "/static/*"),
        description="Paths answered without a key (`*` at the end: a prefix); the web page "
        "(`/`, `/static/`) holds no data, its API calls send the key typed into it.",
    )
    max_concurrent_per_key: int = Field(
        default=0,
        ge=0,
        description="Requests one API key may have in flight on one ingress replica; one more "
        "gets 429 with Retry-After (0: no limit). One client cannot take every slot.",
    )
    allow_open_network: bool = Field(
        default=False,
        description="Serve without API keys on a non-loopback address. Off: `vidserve run` "
        "binds 127.0.0.1 when no key is configured, and an ingress in a Kubernetes pod "
        "refuses to start without keys.",
    )

    @field_validator("api_keys")
    @classmethod
    def _long_enough(cls, value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        for position, key in enumerate(value):
            if len(key.get_secret_value()) < MIN_API_KEY_CHARS:
                raise ValueError(
                    f"auth.api_keys[{position}] is shorter than {MIN_API_KEY_CHARS} characters; "
                    "use a random key such as `python -c 'import secrets; "
                    "print(secrets.token_urlsafe(32))'`"
                )
        return value


class StoreSettings(StrictModel):
    """Where jobs, chunk results and the search index live (deploy/jobs/store.py)."""

    url: str | None = Field(
        default=None,
        description="`sqlite:///path/to/file.db` or `postgresql://user:pass@host:5432/db`; "
        "unset: an SQLite file `vidserve.db` in jobs.data_dir (one ingress replica). "
        "VIDSERVE_STORE_URL overrides (a Secret on clusters).",
    )
    connect_timeout_s: float = Field(
        default=5.0, gt=0, description="Longest a connection attempt to PostgreSQL may take."
    )

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(sqlite:///|postgres(ql)?://)", value):
            raise ValueError(
                f"store.url must start with sqlite:/// (a file) or postgresql:// (a server), "
                f"got {value.split('@')[-1]!r}"
            )
        return value


class JobsSettings(StrictModel):
    """Long-video jobs (/v1/video/jobs): chunking bounds and how much of the cluster one job
    may take."""

    data_dir: Path | None = Field(
        default=None,
        description="Where uploaded job videos (and the default SQLite file) are kept; on a "
        "cluster a volume every extractor replica mounts. Unset: VIDSERVE_CACHE_DIR/data.",
    )
    default_chunk_s: float = Field(default=30.0, gt=0, description="chunk_s when none is asked.")
    min_chunk_s: float = Field(default=2.0, gt=0, description="Shortest chunk a job may ask.")
    max_chunk_s: float = Field(
        default=600.0, gt=0, description="Longest chunk a job may ask (its frames are sampled)."
    )
    min_chunk_step_s: float = Field(
        default=1.0,
        gt=0,
        description="Least chunk_s - overlap_s a job may ask: with max_chunks it bounds a "
        "job's work (refused at POST below it).",
    )
    default_frames_per_chunk: int = Field(
        default=8, ge=1, description="Frames sampled per chunk when none are asked."
    )
    max_chunks: int = Field(
        default=2000, ge=1, description="Most chunks one job may have (3 h at 6 s chunks)."
    )
    max_chunks_in_flight: int = Field(
        default=2,
        ge=1,
        description="Chunks of one job being extracted or captioned at once: a long job takes "
        "at most this many engine slots, so interactive requests are not starved.",
    )
    max_running_jobs: int = Field(
        default=4, ge=1, description="Jobs one ingress replica runs at once; others wait queued."
    )
    chunk_attempts: int = Field(
        default=3, ge=1, description="Tries per chunk on a server-side failure (5xx, timeout)."
    )
    retry_backoff_s: float = Field(
        default=1.0, ge=0, description="Wait before a chunk's second try, doubled after each."
    )
    caption_max_tokens: int = Field(default=256, ge=1, description="Tokens of one caption.")
    summary_max_tokens: int = Field(
        default=512, ge=1, description="Tokens of one aggregation step (a merged summary)."
    )
    chunks_per_chapter: int = Field(
        default=4, ge=1, description="Consecutive chunks merged into one chapter at most."
    )
    lease_s: float = Field(
        default=30.0,
        gt=0,
        description="A running job is owned by its replica while it renews this lease; a job "
        "whose lease ran out (its replica died) is resumed by another.",
    )
    events_poll_s: float = Field(
        default=0.5, gt=0, description="How often an events stream looks for new chunk results."
    )
    max_page_size: int = Field(default=100, ge=1, description="Most jobs one list call returns.")
    max_active_jobs_per_key: int = Field(
        default=16,
        ge=1,
        description="Jobs one API key may have queued or running; one more is 429 too_many_jobs.",
    )
    max_media_bytes_per_key: int = Field(
        default=50 * 1024**3,
        ge=1,
        description="Bytes of job videos (uploads, downloads) one API key may keep on disk; past "
        "it 429 storage_quota_exceeded. DELETE of a job frees its share.",
    )
    min_free_bytes: int = Field(
        default=2 * 1024**3,
        ge=0,
        description="Free space that must stay on jobs.data_dir's disk: a new job that would "
        "go below it is 507 insufficient_storage (the database keeps its room).",
    )
    media_retention_s: float = Field(
        default=7 * 24 * 3600.0,
        ge=0,
        description="How long a finished job's video is kept (for questions about it); then "
        "it is deleted, the job, its captions and result kept.",
    )
    max_event_streams_per_key: int = Field(
        default=8,
        ge=1,
        description="Event streams (GET .../events) one key (or address, without keys) may "
        "hold open on one ingress replica; one more is 429.",
    )
    max_job_claims: int = Field(
        default=5,
        ge=1,
        description="Poison-job rule: a job claimed this many times without finishing or "
        "being handed back (its replica died or stalled running it) is failed with "
        "job_poisoned instead of being retried forever.",
    )

    @model_validator(mode="after")
    def _chunk_bounds(self) -> JobsSettings:
        if not self.min_chunk_s <= self.default_chunk_s <= self.max_chunk_s:
            raise ValueError(
                "jobs: need min_chunk_s <= default_chunk_s <= max_chunk_s, got "
                f"{self.min_chunk_s:g} <= {self.default_chunk_s:g} <= {self.max_chunk_s:g}"
            )
        return self

    def resolved_data_dir(self) -> Path:
        return self.data_dir or env.cache_dir() / "data"


MIN_API_KEY_CHARS = 16
# Room in a JSON body for what surrounds its media (messages, options).
JSON_OVERHEAD_BYTES = 1024 * 1024
# What a request body costs an ingress in memory per byte received, as api/guard.py counts it
# (measured: tests/unit/config/test_memory_bounds.py). JSON: the bytes, the parsed text and the
# media decoded from its base64. Multipart: the file read from its spool and the copy handed
# to the extractor.
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
