"""Real GPU memory of Qwen2.5-VL-7B under transformers, against deploy/models/memory.py's terms.

    python bench/gpu_memory.py        (needs an NVIDIA GPU with ~24 GB free, torch, transformers)

Builds the 7B model from its published shape with random weights in bf16 (nothing downloaded),
then measures what is allocated for the weights, the peak added by one vision-encoder pass over
the largest video the extractor sends (24,576 visual tokens: about 98,000 patches of 14x14), and
the peak added by an 8,192-token text prefill, and prints them beside the estimator's figures.
transformers' eager implementation is not vLLM's (vLLM fuses kernels and uses less for the same
pass), so this bounds the estimator's activation terms from above rather than checking them.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deploy.config.catalog import catalog
from deploy.models.memory import GIB, Setup, activation_bytes, weight_bytes

HF_ID = "Qwen/Qwen2.5-VL-7B-Instruct"
GRID = (8, 112, 110)  # temporal x height x width patches: 98,560, the extractor's largest video
TOKENS = 8192


def _model() -> torch.nn.Module:
    config = Qwen2_5_VLConfig(
        text_config={
            "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
            "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
            "tie_word_embeddings": False,
        },
        vision_config={
            "depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "out_hidden_size": 3584,
            "num_heads": 16, "fullatt_block_indexes": [7, 15, 23, 31], "window_size": 112,
        },
        tie_word_embeddings=False,
    )  # fmt: skip
    config._attn_implementation = "sdpa"
    with torch.device("cuda"):
        return Qwen2_5_VLForConditionalGeneration(config).to(torch.bfloat16).eval()


def _peak(run: object) -> tuple[float, float]:
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    started = time.perf_counter()
    with torch.no_grad():
        run()  # type: ignore[operator]
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 1e9, time.perf_counter() - started


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA GPU: this measurement needs one", file=sys.stderr)
        return 2
    entry = catalog().by_hf_id(HF_ID)
    assert entry is not None
    model = _model()
    weights = torch.cuda.memory_allocated() / 1e9
    grid = torch.tensor([GRID], device="cuda")
    patches = int(grid.prod())
    pixels = torch.randn(patches, 3 * 2 * 14 * 14, dtype=torch.bfloat16, device="cuda")
    vision, vision_s = _peak(lambda: model.model.visual(pixels, grid_thw=grid))
    pixels = pixels[:0]  # free the input before the text pass
    ids = torch.randint(0, 150000, (1, TOKENS), device="cuda")
    text, text_s = _peak(lambda: model.model.language_model(input_ids=ids, use_cache=False))
    setup = Setup(gpu_memory_bytes=80 * GIB, total_pixels=patches * 14 * 14)
    estimated_activations = activation_bytes(entry, setup) / 1e9
    print(f"{torch.cuda.get_device_name()}; {HF_ID}, random bf16 weights, transformers sdpa\n")
    print(f"{'what':<44} | {'measured GB':>11} | {'estimate GB':>11} | {'ratio':>5}")
    print("-" * 82)
    rows = [
        ("weights", weights, weight_bytes(entry) / 1e9),
        (f"vision pass, {patches} patches ({vision_s:.1f} s)", vision, None),
        (f"text prefill, {TOKENS} tokens ({text_s:.1f} s)", text, None),
        ("activations, vision + text", vision + text, estimated_activations),
    ]
    for what, measured, estimated in rows:
        if estimated is None:
            print(f"{what:<44} | {measured:>11.3f} | {'':>11} |")
        else:
            ratio = measured / estimated
            print(f"{what:<44} | {measured:>11.3f} | {estimated:>11.3f} | {ratio:>5.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
