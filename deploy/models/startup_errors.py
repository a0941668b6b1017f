"""What went wrong when the vLLM engine would not start, said as what to change.

The replica's start-up failure reaches `vidserve run` (and `serve status`, and KubeRay's
RayService status) as the deployment's error message: `explain` turns the causes the old
configuration guide listed into that message, with the fix; anything else keeps vLLM's own words.
"""

from __future__ import annotations

from typing import Any

from deploy.config.catalog import DEFAULT_VISION_HF_ID, catalog
from deploy.config.settings import ModelSourceKind, classify_model_source
from deploy.models.memory import Setup, advice


class ModelStartError(RuntimeError):
    """The engine could not start; the message says why and what to change."""

    @classmethod
    def explanation_in(cls, status_message: str) -> str | None:
        """The explanation inside a deployment's status message (Serve shows the replica's
        traceback, which prints this error as `ModelStartError: <explanation>`), or None."""
        rendered = f"{cls.__name__}: "
        if rendered not in status_message:
            return None
        return status_message.split(rendered, 1)[1].strip()


def _chain(exc: BaseException) -> str:
    """The exception and its causes, as one text to match against."""
    parts = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append(f"{type(current).__name__}: {current}")
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


def explain(exc: BaseException, model: str, engine_kwargs: dict[str, Any]) -> str | None:
    """A message with the fix, or None when the cause is not one of the known ones."""
    text = _chain(exc)
    for matches, message in (
        (_is_out_of_memory, _out_of_memory),
        (_needs_remote_code, _remote_code),
        (_quantization_mismatch, _quantization),
        (_model_not_found, _not_found),
    ):
        if matches(text):
            return message(model, engine_kwargs, text)
    return None


def _is_out_of_memory(text: str) -> bool:
    return any(
        marker in text
        for marker in (
            "OutOfMemoryError",
            "CUDA out of memory",
            "No available memory for the cache blocks",
            "larger than the available KV cache memory",
        )
    )


def _out_of_memory(model: str, engine_kwargs: dict[str, Any], text: str) -> str:
    lines = [
        f"the model {model} does not fit in the GPU memory with these settings "
        f"(max_model_len {engine_kwargs.get('max_model_len')}, tensor_parallel_size "
        f"{engine_kwargs.get('tensor_parallel_size', 1)}, gpu_memory_utilization "
        f"{engine_kwargs.get('gpu_memory_utilization')})."
    ]
    entry = catalog().by_hf_id(model)
    if entry is not None and entry.architecture is not None:
        from deploy.models.gpus import find_gpus

        gpus = find_gpus()
        memory = min((g.memory_bytes for g in gpus), default=0)
        if memory:
            setup = Setup(
                gpu_memory_bytes=memory,
                tensor_parallel_size=int(engine_kwargs.get("tensor_parallel_size", 1)),
                max_model_len=int(engine_kwargs.get("max_model_len", 8192)),
                gpu_memory_utilization=float(engine_kwargs.get("gpu_memory_utilization", 0.9)),
            )
            lines.extend(f"fix: {line}" for line in advice(entry, setup, len(gpus)))
    lines.append(
        "fix: lower llm.max_model_len, raise llm.gpu_memory_utilization, use an AWQ model, or "
        "more GPUs (llm.tensor_parallel_size); `vidserve models` and `vidserve doctor` estimate "
        "what fits"
    )
    return _with_cause("\n".join(lines), text)


def _needs_remote_code(text: str) -> bool:
    return "trust_remote_code" in text and "custom code" in text


def _remote_code(model: str, engine_kwargs: dict[str, Any], text: str) -> str:
    return _with_cause(
        f"the model {model} ships its own code, which runs only with trust_remote_code.\n"
        "fix: set llm.trust_remote_code: true in serve_config.yaml (only for a model whose code "
        "you trust)",
        text,
    )


def _quantization_mismatch(text: str) -> bool:
    return "does not match the quantization method" in text or (
        "Cannot find the config file for" in text and "quantization" in text.lower()
    )


def _quantization(model: str, engine_kwargs: dict[str, Any], text: str) -> str:
    return _with_cause(
        f"llm.engine_kwargs.quantization ({engine_kwargs.get('quantization')!r}) does not match "
        f"how the weights of {model} are stored.\n"
        "fix: remove llm.engine_kwargs.quantization (vLLM reads it from the model's config), or "
        "pick the model that matches it (e.g. an -AWQ model for awq)",
        text,
    )


def _model_not_found(text: str) -> bool:
    return any(
        marker in text
        for marker in (
            "LocalEntryNotFoundError",
            "RepositoryNotFoundError",
            "Repository Not Found",
            "HFValidationError",
            "is not a local folder and is not a valid model identifier",
            "We couldn't connect to",
        )
    )


def _not_found(model: str, engine_kwargs: dict[str, Any], text: str) -> str:
    try:
        kind = classify_model_source(model)
    except ValueError:
        kind = None
    if kind in (ModelSourceKind.LOCAL_DIR, ModelSourceKind.HF_CACHE_SNAPSHOT):
        what = f"the directory {model} does not exist or holds no model"
        fix = "point VLLM_MODEL_PATH / llm.model at the model's directory (with config.json)"
    else:
        what = (
            f"the model {model} is neither in the local Hugging Face cache nor downloadable "
            "(HF_HUB_OFFLINE is set, the Hub is unreachable, or there is no such repository)"
        )
        fix = (
            f"`vidserve download {model}` where there is network (same HF_HOME), check the id "
            f"(e.g. {DEFAULT_VISION_HF_ID}; `vidserve models` lists them), or set HF_TOKEN for a "
            "gated model"
        )
    return _with_cause(f"{what}.\nfix: {fix}", text)


def _with_cause(message: str, text: str) -> str:
    first = text.splitlines()[0] if text else ""
    return f"{message}\n(vLLM said: {first[:300]})"


def preflight(model: str) -> str | None:
    """Before anything starts: a model that certainly cannot load (a directory that is missing
    or incomplete; an uncached HF id with HF_HUB_OFFLINE set), said with the fix; else None."""
    from deploy.config import env
    from deploy.models.model_files import locate

    try:
        files = locate(model)
    except ValueError as exc:
        return str(exc)
    if files.directory is None:
        if env.hf_hub_offline():
            return _not_found(model, {}, "HF_HUB_OFFLINE=1 and not in the Hugging Face cache")
        return None
    if files.missing:
        return (
            f"the model directory {files.directory} lacks: {', '.join(files.missing)}.\n"
            "fix: download it again (`vidserve download <hf id>` resumes), or copy the whole "
            "repository there"
        )
    return None
