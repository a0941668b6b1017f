"""vLLM's Efficient Video Sampling (`llm.video_pruning_rate`) on the tiny models: prompt tokens
and engine throughput at rates 0, 0.5 and 0.75.

    python bench/pruning.py [--requests 8] [--frames 16] [--rates 0 0.5 0.75]

For each tiny random model (Qwen2.5-VL and Qwen3-VL, built locally: deploy/dev/tiny_model.py)
and each rate, a fresh engine in its own process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`, the CPU
profile's engine settings) answers --requests questions about as many distinct videos (never
seen: cold), their frames sampled by vidserve's extractor (video/decode.py) and sent with the
VLLM replica's own engine inputs (llm_deployment.py), all submitted at once so the engine batches
them. Printed: prompt tokens per request, requests/s, and each against rate 0 of the same model.
The tiny models' language part is a few ms of work, so their throughput barely moves: the
saving is in the prefill of a real model's 7B parameters, which scales with the prompt tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deploy.config import env  # noqa: E402
from deploy.dev.tiny_model import FAMILIES, ensure_tiny_model  # noqa: E402

QUESTION = "What changes over time?"
MAX_TOKENS = 16
# vidserve's CPU profile's frames: at most 224x224 (serve_config.cpu.yaml).
PIXELS = {"min_pixels": 56 * 56, "max_pixels": 224 * 224, "total_pixels": 16 * 224 * 224}


def _videos(directory: Path, count: int) -> list[Path]:
    from tests.support.videos import encode_index, write_frames

    paths = []
    for n in range(count):
        images = (encode_index(1000 * n + i, 640, 360) for i in range(150))
        paths.append(write_frames(directory / f"v{n}.mp4", images, 30.0, (640, 360), ["-g", "30"]))
    return paths


def one(model: str, rate: float, videos: list[str], frames: int) -> dict[str, float]:
    """One engine at `rate`: every video's question at once."""
    from vllm import SamplingParams

    from deploy.config.settings import AppArgs
    from deploy.core.messages import SamplingOptions
    from deploy.llm_deployment import engine_inputs
    from deploy.video.decode import extract_file
    from tests.support.engine_prompt import cpu_engine

    args = AppArgs.model_validate({"llm": {"model": model}, "extraction": PIXELS})
    llm = cpu_engine(model, pruning_rate=rate)
    tokenizer = llm.get_tokenizer()
    messages = [
        {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": QUESTION}]}
    ]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    params = SamplingParams(max_tokens=MAX_TOKENS, temperature=0.0, ignore_eos=True)
    warm = extract_file(videos[0], SamplingOptions(num_frames=frames), args.extraction)
    llm.generate(engine_inputs(prompt, warm.meta, warm.frames, "warm-up"), params, use_tqdm=False)
    batches = [
        extract_file(v, SamplingOptions(num_frames=frames), args.extraction) for v in videos[1:]
    ]
    inputs = [engine_inputs(prompt, b.meta, b.frames, f"v{n}") for n, b in enumerate(batches)]
    started = time.perf_counter()
    outputs = llm.generate(inputs, params, use_tqdm=False)  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    tokens = [len(o.prompt_token_ids or []) for o in outputs]
    return {"prompt_tokens": sum(tokens) / len(tokens), "requests_per_s": len(outputs) / seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--rates", type=float, nargs="+", default=[0.0, 0.5, 0.75])
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "RATE"), help=argparse.SUPPRESS)
    parser.add_argument("--videos", nargs="*", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.one:
        model, rate = options.one
        result = one(model, float(rate), options.videos, options.frames)
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        videos = [str(p) for p in _videos(Path(tmp), options.requests + 1)]
        rows = []
        for family in FAMILIES:
            model = str(ensure_tiny_model(env.cache_dir() / f"tiny-{family}", family=family))
            for rate in options.rates:
                print(f"{family}, rate {rate:g} ...", flush=True)
                run = subprocess.run(
                    [sys.executable, __file__, "--one", model, str(rate),
                     "--frames", str(options.frames), "--videos", *videos],
                    capture_output=True, text=True, check=False, cwd=ROOT,
                )  # fmt: skip
                line = next((x for x in run.stdout.splitlines() if x.startswith("RESULT ")), None)
                if run.returncode != 0 or line is None:
                    print(run.stdout[-2000:] + run.stderr[-3000:])
                    return 1
                rows.append((family, rate, json.loads(line.removeprefix("RESULT "))))
    cores = os.cpu_count()
    print(f"\n{options.requests} distinct videos at once, {options.frames} frames each (at most "
          f"224x224), {MAX_TOKENS} tokens out; tiny random models, {cores} CPU cores")  # fmt: skip
    print(f"{'model':<11} | {'rate':>5} | {'prompt tokens':>13} | {'vs rate 0':>9} | "
          f"{'req/s':>6} | {'vs rate 0':>9}")  # fmt: skip
    print("-" * 70)
    base: dict[str, dict[str, float]] = {}
    for family, rate, row in rows:
        first = base.setdefault(family, row)
        tokens, speed = row["prompt_tokens"], row["requests_per_s"]
        print(f"{family:<11} | {rate:5.2f} | {tokens:13.0f} | "
              f"{tokens / first['prompt_tokens']:8.2f}x | "
              f"{speed:6.2f} | {speed / first['requests_per_s']:8.2f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
