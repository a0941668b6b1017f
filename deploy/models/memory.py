"""How much GPU memory a model needs under vLLM, and what fits when it does not.

Per GPU of a tensor-parallel group of `tp` GPUs, vLLM fills `gpu_memory_utilization` of the
memory with, in order:

- the weights, split over the group: parameters x bytes per parameter of the dtype (AWQ stores
  the language model's linear layers in 4 bits plus a 16-bit scale and a 4-bit zero point per
  group of 128 weights, and keeps the vision encoder and the embeddings in 16 bits);
- a runtime overhead: CUDA context, NCCL buffers and CUDA graphs (RUNTIME_OVERHEAD_BYTES);
- the peak activations of its profiling run: `max_num_batched_tokens` tokens through the MLP
  (gate and up projections, intermediate_size wide each) and, for a vision model, the largest
  video the extractor sends (`total_pixels` / 14 x 14 patches) through the vision encoder's MLP;
- the KV cache with what is left: per token 2 (K and V) x layers x kv_heads x head_dim x 2 bytes,
  with the KV heads split over the group (replicated when the group is larger than kv_heads).

A configuration fits when the KV cache holds at least one sequence of `max_model_len` tokens
(vLLM refuses to start otherwise); `max_concurrency` full-length sequences fit at once. The
figures are estimates: vLLM's own profiling at start-up has the last word. The GPU memory is
what nvidia-smi reports; CUDA lets a process use a little less (81,080 of 81,559 MiB on an H100,
seen on a machine lent to this project), within the margin that the utilization leaves.

Measured (bench/gpu_memory.py on an H100, Qwen2.5-VL-7B with random bf16 weights under
transformers): weights 16.67 GB against 16.58 estimated; the activations of a vision pass over
the largest video plus an 8,192-token prefill peaked at 5.57 GB against 1.97 estimated (2.8x).
vLLM's fused kernels use less than transformers' eager path, but how much was not measured (vLLM
cannot be installed on that machine): read the activation terms as a lower bound, and a setup
that fits with under ~3 GB to spare as one to check with vLLM's own start-up profiling.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

from deploy.config.catalog import Architecture, CatalogEntry, catalog

GIB = 1024**3
RUNTIME_OVERHEAD_BYTES = int(1.5 * GIB)
AWQ_BYTES_PER_WEIGHT = 0.5 + (2 + 0.5) / 128  # 4-bit weights + per-128 fp16 scale, 4-bit zero
DTYPE_BYTES = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0, "half": 2.0, "fp8": 1.0}
KV_BYTES = 2  # fp16/bf16 KV cache (vLLM's default kv_cache_dtype "auto")
PATCH_PIXELS = 14 * 14
DEFAULT_BATCHED_TOKENS = 8192
DEFAULT_TOTAL_PIXELS = 24576 * 28 * 28  # serve_config.yaml's extraction.total_pixels
TP_SIZES = (1, 2, 4, 8)


@dataclass(frozen=True)
class Setup:
    """What the estimate is for."""

    gpu_memory_bytes: int
    tensor_parallel_size: int = 1
    max_model_len: int = 8192
    gpu_memory_utilization: float = 0.90
    dtype: str = "bfloat16"
    max_num_batched_tokens: int = DEFAULT_BATCHED_TOKENS
    total_pixels: int = DEFAULT_TOTAL_PIXELS


@dataclass(frozen=True)
class Estimate:
    weights_bytes: int  # all of them, over the group
    weights_per_gpu: int
    activations_per_gpu: int
    overhead_per_gpu: int
    budget_per_gpu: int  # gpu memory x utilization
    kv_bytes_per_token_per_gpu: int
    kv_cache_tokens: int  # what the KV cache holds (0 when nothing is left for it)
    max_model_len: int

    @property
    def fits(self) -> bool:
        return self.kv_cache_tokens >= self.max_model_len

    @property
    def max_concurrency(self) -> int:
        """Sequences of max_model_len tokens the KV cache holds at once."""
        return self.kv_cache_tokens // self.max_model_len

    def longest_context(self, concurrency: int = 1) -> int:
        """The largest max_model_len at which `concurrency` full sequences fit."""
        return self.kv_cache_tokens // concurrency

    @property
    def shortfall_bytes(self) -> int:
        """Memory per GPU missing for one max_model_len sequence (0 when it fits)."""
        needed = self.max_model_len * self.kv_bytes_per_token_per_gpu
        return max(0, needed - self.kv_cache_tokens * self.kv_bytes_per_token_per_gpu)


def weight_bytes(entry: CatalogEntry, dtype: str = "bfloat16") -> int:
    """Bytes of the weights: every parameter at the dtype's size; AWQ models at their 4 bits
    (the dtype then only sets the unquantized parts, 16 bits)."""
    params = round(entry.params_b * 1e9)
    if entry.quantization == "awq":
        unquantized = round(entry.vision_params_b * 1e9) + entry.embedding_params
        return int((params - unquantized) * AWQ_BYTES_PER_WEIGHT + unquantized * 2)
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}: one of {', '.join(DTYPE_BYTES)}")
    return int(params * DTYPE_BYTES[dtype])


def kv_bytes_per_token(entry: CatalogEntry, tensor_parallel_size: int = 1) -> int:
    """KV cache bytes per token on each GPU of the group."""
    arch = _arch(entry)
    kv_heads = math.ceil(arch.kv_heads / tensor_parallel_size)
    return 2 * arch.layers * kv_heads * arch.head_dim * KV_BYTES


def activation_bytes(entry: CatalogEntry, setup: Setup) -> int:
    """Peak activations of vLLM's profiling run on each GPU (the MLPs dominate)."""
    arch = _arch(entry)
    tp = setup.tensor_parallel_size
    act = 2 if entry.quantization == "awq" else DTYPE_BYTES.get(setup.dtype, 2.0)
    text = setup.max_num_batched_tokens * 2 * arch.intermediate * act / tp
    vision = 0.0
    if entry.vision_encoder is not None:
        patches = setup.total_pixels / PATCH_PIXELS
        vision = patches * 2 * entry.vision_encoder.intermediate * act / tp
    return int(text + vision)


def estimate(entry: CatalogEntry, setup: Setup) -> Estimate:
    tp = setup.tensor_parallel_size
    weights = weight_bytes(entry, setup.dtype)
    budget = int(setup.gpu_memory_bytes * setup.gpu_memory_utilization)
    activations = activation_bytes(entry, setup)
    per_token = kv_bytes_per_token(entry, tp)
    left = budget - weights // tp - RUNTIME_OVERHEAD_BYTES - activations
    tokens = max(0, left) // per_token
    return Estimate(
        weights_bytes=weights,
        weights_per_gpu=weights // tp,
        activations_per_gpu=activations,
        overhead_per_gpu=RUNTIME_OVERHEAD_BYTES,
        budget_per_gpu=budget,
        kv_bytes_per_token_per_gpu=per_token,
        kv_cache_tokens=min(tokens, 2**40),
        max_model_len=setup.max_model_len,
    )


def advice(entry: CatalogEntry, setup: Setup, gpus_available: int | None = None) -> list[str]:
    """What to change when `setup` does not fit: each line one change that would fit, the
    cheapest first (a shorter context, more of the GPU, more GPUs, a smaller model)."""
    result = estimate(entry, setup)
    if result.fits:
        return []
    candidates = [
        _shorter_context(result),
        _fuller_gpu(entry, setup),
        _more_gpus(entry, setup, gpus_available),
        _smaller_model(entry, setup),
    ]
    lines = [line for line in candidates if line]
    return lines or ["no catalog model fits this GPU: use a larger GPU or more of them"]


def _shorter_context(result: Estimate) -> str | None:
    longest = result.longest_context()
    if longest < 2048:
        return None
    return f"lower llm.max_model_len to {longest} or less (the KV cache holds {longest})"


def _fuller_gpu(entry: CatalogEntry, setup: Setup) -> str | None:
    for utilization in (0.90, 0.95):
        higher = utilization > setup.gpu_memory_utilization
        if higher and estimate(entry, replace(setup, gpu_memory_utilization=utilization)).fits:
            return f"raise llm.gpu_memory_utilization to {utilization}"
    return None


def fewest_gpus(
    entry: CatalogEntry, setup: Setup, limit: int = max(TP_SIZES), above: int = 0
) -> tuple[int, Estimate] | None:
    """The smallest tensor_parallel_size (more than `above`, at most `limit`, dividing the
    attention heads) at which `setup` fits, with its estimate."""
    for tp in TP_SIZES:
        if above < tp <= limit and _arch(entry).heads % tp == 0:
            result = estimate(entry, replace(setup, tensor_parallel_size=tp))
            if result.fits:
                return tp, result
    return None


def _more_gpus(entry: CatalogEntry, setup: Setup, gpus_available: int | None) -> str | None:
    limit = gpus_available if gpus_available is not None else max(TP_SIZES)
    found = fewest_gpus(entry, setup, limit, above=setup.tensor_parallel_size)
    if found is None:
        return None
    tp, wider = found
    return (
        f"use {tp} GPUs: llm.tensor_parallel_size: {tp} (fits {wider.max_concurrency} "
        f"sequences of {setup.max_model_len} tokens)"
    )


def _smaller_model(entry: CatalogEntry, setup: Setup) -> str | None:
    for smaller in _alternatives(entry):
        if estimate(smaller, setup).fits:
            return f"a smaller model: llm.model: {smaller.hf_id}"
    return None


def _alternatives(entry: CatalogEntry) -> list[CatalogEntry]:
    """The AWQ version of this model first, then smaller models of the same modality: of its
    own family first (a Qwen2.5-VL user is offered a smaller Qwen2.5-VL before a Qwen3-VL),
    the largest first."""
    models = catalog().models
    same = [m for m in models if m.vision == entry.vision and m.hf_id != entry.hf_id]
    awq = [m for m in same if m.quantized_of == entry.hf_id]
    family = _family(entry.hf_id)
    smaller = sorted(
        (m for m in same if weight_bytes(m) < weight_bytes(entry) and m not in awq),
        key=lambda m: (_family(m.hf_id) != family, -weight_bytes(m)),
    )
    return awq + smaller


def _family(hf_id: str) -> str:
    """`Qwen/Qwen2.5-VL-7B-Instruct` -> `Qwen/Qwen2.5-VL`: the id before its size."""
    return re.split(r"-\d+(?:\.\d+)?B\b", hf_id, maxsplit=1)[0]


def _arch(entry: CatalogEntry) -> Architecture:
    if entry.architecture is None:
        raise ValueError(f"{entry.hf_id}: the catalog has no architecture for it")
    return entry.architecture
