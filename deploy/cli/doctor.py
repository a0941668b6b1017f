"""`vidserve doctor`: checks the setup and says, for each problem, what to change.

Checks, in order: the serve config; the model (what kind of source, whether all its files are
there, whether it sees video, whether it needs trust_remote_code, whether its quantization
matches); the GPUs against the memory estimate; Ray (when an address is given); Ollama (when the
backend policy uses it); the speech model's weights (when speech is on). Exit 1 when any problem
is found, else 0.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import httpx

from deploy.config import env
from deploy.config.catalog import DEFAULT_VISION_HF_ID, catalog, hf_model_vision, normalize_tag
from deploy.config.serve_config import Profile, app_args, load_config
from deploy.config.settings import Accelerator, AppArgs, Backend, ModelSourceKind, SpeechSettings
from deploy.core.errors import ServiceUnavailable
from deploy.models.gpus import Gpu, find_gpus
from deploy.models.memory import GIB, Setup, advice, estimate
from deploy.models.model_files import ModelFiles, locate
from deploy.speech.asr import model_directory

Level = Literal["ok", "note", "problem"]
KIND_NAMES = {
    ModelSourceKind.HF_ID: "Hugging Face id",
    ModelSourceKind.LOCAL_DIR: "local directory",
    ModelSourceKind.HF_CACHE_SNAPSHOT: "Hugging Face cache snapshot",
}


@dataclass(frozen=True)
class Finding:
    level: Level
    topic: str
    message: str
    fix: str = ""


@dataclass(frozen=True)
class Context:
    config_file: Path
    profile: Profile
    overlays: tuple[dict[str, Any], ...]
    ray_address: str | None
    uses_tiny_model: Callable[[dict[str, Any]], bool]


def run_checks(ctx: Context) -> list[Finding]:
    try:
        config = load_config(ctx.config_file, ctx.profile, extra_overlays=ctx.overlays)
    except ValueError as exc:
        return [
            Finding(
                "problem",
                "serve config",
                str(exc),
                f"change the key named above in {ctx.config_file} (or its profile overlay)",
            )
        ]
    args = AppArgs.from_args(app_args(config))
    findings = [Finding("ok", "serve config", f"{ctx.config_file.name}, profile {ctx.profile}")]
    if Backend.VLLM in args.backends.order:
        if ctx.uses_tiny_model(config):
            findings.append(
                Finding(
                    "note",
                    "model",
                    "no model is set: `vidserve run` serves the tiny random test model, whose "
                    "answers are meaningless",
                    f"set VLLM_MODEL_PATH (e.g. {DEFAULT_VISION_HF_ID}, a local directory or a "
                    "Hugging Face cache snapshot)",
                )
            )
        else:
            findings.extend(check_model(args))
            findings.extend(check_gpus(args, find_gpus()))
    findings.extend(check_ray(ctx.ray_address or os.environ.get("RAY_ADDRESS")))
    if Backend.OLLAMA in args.backends.order:
        findings.extend(check_ollama(args))
    if args.speech.enabled:
        findings.append(check_speech(args.speech))
    return findings


def check_speech(settings: SpeechSettings) -> Finding:
    """The speech model's weights: the bundled package installed, a local directory holding a
    CTranslate2 model, or a Hugging Face id in the cache (else: downloaded at start, if online)."""
    source = settings.model
    fix = "set speech.model (VIDSERVE_ASR_MODEL), or speech.enabled: false"
    try:
        directory = model_directory(source)
    except ServiceUnavailable as exc:
        return Finding("problem", "speech model", exc.message, f"pip install {source}; or {fix}")
    path = Path(directory)
    if path.is_dir():
        if (path / "model.bin").is_file():
            return Finding("ok", "speech model", f"{source}: {path}")
        return Finding(
            "problem",
            "speech model",
            f"{path} has no model.bin: it is not a faster-whisper (CTranslate2) model",
            "convert it with `ct2-transformers-converter --model <whisper> --output_dir <dir>` "
            f"or use a Systran/faster-whisper-* id; or {fix}",
        )
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(source, "model.bin"), str):
        return Finding("ok", "speech model", f"{source}, in the Hugging Face cache")
    if env.hf_hub_offline():
        return Finding(
            "problem",
            "speech model",
            f"{source} is not in the Hugging Face cache and HF_HUB_OFFLINE is set: the "
            "Transcriber answers 503 asr_unavailable",
            f"`vidserve download {source}` while online; or {fix}",
        )
    return Finding(
        "note",
        "speech model",
        f"{source} is not in the Hugging Face cache: the Transcriber downloads it when it starts",
        f"`vidserve download {source}` ahead of time",
    )


def check_model(args: AppArgs) -> list[Finding]:
    source = args.llm.model
    try:
        files = locate(source)
    except ValueError as exc:
        return [Finding("problem", "model", str(exc), "set VLLM_MODEL_PATH or llm.model")]
    kind = KIND_NAMES[files.kind]
    findings = [_files_finding(files, kind)]
    findings.extend(_vision_finding(args, files))
    config = files.config or {}
    if _needs_remote_code(config) and not args.llm.trust_remote_code:
        findings.append(
            Finding(
                "problem",
                "model",
                f"{source} ships its own modelling code (config.json auto_map), which vLLM runs "
                "only with trust_remote_code",
                "set llm.trust_remote_code: true (only for a model whose code you trust)",
            )
        )
    stored = (config.get("quantization_config") or {}).get("quant_method")
    asked = args.llm.engine_kwargs.get("quantization")
    if stored and asked and str(asked).lower() != str(stored).lower():
        findings.append(
            Finding(
                "problem",
                "model",
                f"llm.engine_kwargs.quantization is {asked!r} but the weights of {source} are "
                f"{stored!r}",
                f"remove engine_kwargs.quantization (vLLM reads it from the model) or set it to "
                f"{stored!r}",
            )
        )
    return findings


def _needs_remote_code(config: dict[str, Any]) -> bool:
    """The repository brings its own code (auto_map) for a model type transformers lacks."""
    if "auto_map" not in config:
        return False
    from transformers import CONFIG_MAPPING

    return config.get("model_type") not in CONFIG_MAPPING


def _files_finding(files: ModelFiles, kind: str) -> Finding:
    source = files.source
    if files.directory is None:
        if env.hf_hub_offline():
            return Finding(
                "problem",
                "model",
                f"{source} ({kind}) is not in the Hugging Face cache ({_hf_cache()}) and "
                "HF_HUB_OFFLINE=1 forbids downloading it",
                f"`vidserve download {source}` where there is network (same HF_HOME), or unset "
                "HF_HUB_OFFLINE",
            )
        return Finding(
            "note",
            "model",
            f"{source} ({kind}) is not downloaded yet: vLLM downloads it at start",
            f"`vidserve download {source}` fetches it now, with progress",
        )
    if files.missing:
        return Finding(
            "problem",
            "model",
            f"{source} ({kind}) at {files.directory} lacks: {', '.join(files.missing)}",
            "download it again (`vidserve download <hf id>` resumes) or copy the whole "
            "repository into the directory",
        )
    return Finding("ok", "model", f"{source} ({kind}), all files present at {files.directory}")


def _vision_finding(args: AppArgs, files: ModelFiles) -> list[Finding]:
    if hf_model_vision(args.llm.model, files.config) is False:
        return [
            Finding(
                "problem",
                "model",
                f"{args.llm.model} is a text-only model: every video or image request gets "
                "422 model_cannot_see",
                f"set llm.model to a vision model, e.g. {DEFAULT_VISION_HF_ID} "
                "(`vidserve models` lists them)",
            )
        ]
    return []


def check_gpus(args: AppArgs, gpus: list[Gpu]) -> list[Finding]:
    llm = args.llm
    if llm.accelerator is Accelerator.CPU:
        return [Finding("ok", "gpu", "the CPU engine is configured: no GPU needed")]
    if not gpus:
        return [
            Finding(
                "problem",
                "gpu",
                "llm.accelerator is gpu but no NVIDIA GPU answers nvidia-smi",
                "install the NVIDIA driver, or run without a GPU: `make run PROFILE=cpu` "
                "(vLLM on CPU) or `make run PROFILE=ollama`",
            )
        ]
    found = f"{len(gpus)} x {gpus[0].name} ({gpus[0].memory_gib:.0f} GiB)"
    if llm.tensor_parallel_size > len(gpus):
        return [
            Finding(
                "problem",
                "gpu",
                f"llm.tensor_parallel_size is {llm.tensor_parallel_size} but {found} found",
                f"set llm.tensor_parallel_size to {len(gpus)} or fewer, or add GPUs",
            )
        ]
    entry = catalog().by_hf_id(llm.served_model_id)
    if entry is None:
        return [Finding("note", "gpu", f"{found}; {llm.model} is not in the catalog: no estimate")]
    setup = Setup(
        gpu_memory_bytes=min(g.memory_bytes for g in gpus),
        tensor_parallel_size=llm.tensor_parallel_size,
        max_model_len=llm.max_model_len,
        gpu_memory_utilization=llm.gpu_memory_utilization,
        dtype={"auto": "bfloat16", "float": "float32"}.get(llm.dtype, llm.dtype),
    )
    result = estimate(entry, setup)
    if result.fits:
        return [
            Finding(
                "ok",
                "gpu",
                f"{found}: {llm.model} fits with about {result.kv_cache_tokens} tokens of KV "
                f"cache ({result.max_concurrency} sequences of {llm.max_model_len})",
            )
        ]
    need = (result.weights_per_gpu + result.overhead_per_gpu + result.activations_per_gpu) / GIB
    return [
        Finding(
            "problem",
            "gpu",
            f"{llm.model} does not fit {found} with max_model_len {llm.max_model_len} and "
            f"tensor_parallel_size {llm.tensor_parallel_size}: about {need:.1f} GiB per GPU "
            f"before the KV cache, of {result.budget_per_gpu / GIB:.1f} GiB usable",
            "; or ".join(advice(entry, setup, gpus_available=len(gpus))),
        )
    ]


def check_ray(address: str | None) -> list[Finding]:
    if not address:
        return [Finding("ok", "ray", "no RAY_ADDRESS: `vidserve run` starts a local Ray")]
    http = address.startswith(("http://", "https://"))
    reachable = _dashboard_up(address) if http else _port_open(address)
    if reachable:
        return [Finding("ok", "ray", f"reachable at {address}")]
    return [
        Finding(
            "problem",
            "ray",
            f"no Ray answers at {address}",
            "start it (`ray start --head`), fix RAY_ADDRESS / --ray-address (the dashboard "
            "http://HOST:8265 or the GCS HOST:6379), or unset it to let `vidserve run` start one",
        )
    ]


def _dashboard_up(url: str) -> bool:
    try:
        return httpx.get(f"{url.rstrip('/')}/api/version", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def _port_open(address: str) -> bool:
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    if parsed.hostname is None:
        return False
    try:
        with socket.create_connection((parsed.hostname, parsed.port or 6379), timeout=3):
            return True
    except OSError:
        return False


def check_ollama(args: AppArgs) -> list[Finding]:
    import ollama

    host, tag = args.ollama.host, args.ollama_model
    try:
        listed = ollama.Client(host=host, timeout=5).list()
    except (ConnectionError, httpx.HTTPError, ollama.ResponseError) as exc:
        return [
            Finding(
                "problem",
                "ollama",
                f"Ollama is not reachable at {host} ({exc})",
                "start it (`ollama serve`), point OLLAMA_HOST / ollama.host at it, or run "
                "without the fallback: VIDSERVE_FALLBACK=none",
            )
        ]
    names = {normalize_tag(m.model or "") for m in listed.models}
    pulled = ", ".join(sorted(names)) or "none"
    if normalize_tag(tag) not in names:
        return [
            Finding(
                "problem",
                "ollama",
                f"Ollama at {host} does not have {tag} (it has: {pulled})",
                f"`ollama pull {tag}` (on the Ollama host)",
            )
        ]
    return [Finding("ok", "ollama", f"{tag} is pulled at {host}")]


def _hf_cache() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def render(findings: list[Finding]) -> str:
    lines = []
    for finding in findings:
        first, *rest = finding.message.splitlines() or [""]
        lines.append(f"{finding.level:<8} {finding.topic:<12} {first}")
        lines.extend(f"{'':<8} {'':<12} {line}" for line in rest)
        if finding.fix:
            lines.append(f"{'':<8} {'':<12} fix: {finding.fix}")
    problems = sum(f.level == "problem" for f in findings)
    lines.append(f"\n{problems} problem(s) found" if problems else "\nno problem found")
    return "\n".join(lines)
