"""`vidserve models`: the catalog as a table, marking what fits the GPUs found."""

from __future__ import annotations

from deploy.config.catalog import GPU_SIZES_GB, CatalogEntry, catalog
from deploy.models.gpus import Gpu
from deploy.models.memory import GIB, Estimate, Setup, fewest_gpus, weight_bytes

CONTEXT = 8192  # the context `here` is judged at: serve_config.yaml's llm.max_model_len


def best_fit(
    entry: CatalogEntry, gpu_memory_bytes: int, gpu_count: int
) -> tuple[int, Estimate] | None:
    """The fewest GPUs (of those there are) on which the model runs with a CONTEXT context."""
    return fewest_gpus(entry, Setup(gpu_memory_bytes, max_model_len=CONTEXT), limit=gpu_count)


def _recommended(entry: CatalogEntry, size: int) -> str:
    settings = entry.recommended[size]
    return f"tp{settings.tensor_parallel_size} {settings.max_model_len // 1024}k"


def table(gpus: list[Gpu]) -> str:
    header = ["model", "sees", "params", "weights", "ollama", *(f"{s} GB" for s in GPU_SIZES_GB)]
    here = bool(gpus)
    if here:
        header.append(f"here ({len(gpus)} x {gpus[0].name})")
    rows = [header]
    for entry in catalog().models:
        dtype = entry.quantization or "bf16"
        row = [
            entry.hf_id,
            entry.modality,
            f"{entry.params_b:.1f}B",
            f"{weight_bytes(entry) / 1e9:.1f} GB {dtype}",
            entry.ollama or "-",
            *(_recommended(entry, size) for size in GPU_SIZES_GB),
        ]
        if here:
            fit = best_fit(entry, min(g.memory_bytes for g in gpus), len(gpus))
            row.append(f"yes: tp{fit[0]}, {fit[1].max_concurrency} x {CONTEXT}" if fit else "no")
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def footer(gpus: list[Gpu]) -> str:
    sizes = "GB columns: tensor_parallel_size and max_model_len recommended for GPUs of that size."
    if gpus:
        return (
            f"{sizes}\nhere: whether it runs on the GPUs found ({len(gpus)} x "
            f"{gpus[0].memory_gib:.0f} GiB) with a {CONTEXT}-token context, on how many GPUs, "
            "and how many such sequences at once (estimate; `vidserve doctor` checks your config)."
        )
    return f"{sizes}\nNo NVIDIA GPU found (nvidia-smi): --gpu-memory-gb N [--gpus K] checks a size."


def fake_gpus(memory_gb: float | None, count: int) -> list[Gpu]:
    if memory_gb is None:
        return []
    return [Gpu(i, f"{memory_gb:g} GiB GPU", int(memory_gb * GIB)) for i in range(count)]


def speech_table() -> str:
    """The speech models the Transcriber runs (speech.model)."""
    rows = [["speech model", "whisper", "languages", "params", "weights", ""]]
    for entry in catalog().speech_models:
        rows.append([entry.id, entry.whisper, entry.languages, f"{entry.params_m}M",
                     f"{entry.weights_mb} MB", entry.note])  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]  # fmt: skip
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)
