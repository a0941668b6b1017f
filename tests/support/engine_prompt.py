"""What the vLLM engine itself receives for frames vidserve extracted: the real extractor
(video/decode.py) samples a video, the VLLM replica's own functions (llm_deployment.py: the
conversation, the engine inputs with the frames' metadata) build the request, and vLLM's engine
(in this process, `VLLM_ENABLE_V1_MULTIPROCESSING=0`) renders the prompt its model's processor
makes of them. Printed as JSON: the frames' shape and times, the prompt's text and token count.

    python -m tests.support.engine_prompt MODEL_DIR VIDEO --out seen.json --frames 4 \
        [--start-s 8 --end-s 16] [--pruning-rate 0.5] [--profile cpu] [--question TEXT]

Run as its own process by tests (tests/integration/test_qwen3_vl.py): an engine in the test
process would keep its memory and threads for the rest of the session.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def seen_by_engine(model: Path, video: Path, *args: str) -> dict[str, Any]:
    """Run this module in its own process on `video`; what it found, as a dict."""
    out = video.with_name(f"{video.stem}-{abs(hash(args)):x}.seen.json")
    command = [sys.executable, "-m", "tests.support.engine_prompt", str(model), str(video)]
    run = subprocess.run(
        [*command, "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=ROOT,
    )
    if run.returncode != 0:
        raise AssertionError(f"the engine run failed: {run.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def cpu_engine(model: str, *, pruning_rate: float = 0.0, kv_cache_mib: int = 256) -> Any:
    """vLLM's engine in this process with the CPU profile's settings (call it in a process of
    its own: it keeps its memory and threads): float32, eager, one video or image a prompt."""
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    from vllm import LLM

    return LLM(
        model=model,
        dtype="float32",
        enforce_eager=True,
        max_model_len=4096,
        kv_cache_memory_bytes=kv_cache_mib << 20,
        limit_mm_per_prompt={"image": 1, "video": 1},
        **({"video_pruning_rate": pruning_rate} if pruning_rate else {}),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("video")
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--start-s", type=float)
    parser.add_argument("--end-s", type=float)
    parser.add_argument("--pruning-rate", type=float, default=0.0, help="llm.video_pruning_rate")
    parser.add_argument(
        "--profile", choices=["cpu"], help="extract with this serve_config profile's settings"
    )
    parser.add_argument("--question", default="When does it change?")
    parser.add_argument("--out", required=True, help="the JSON's file (vLLM logs to stdout)")
    args = parser.parse_args()

    from vllm.sampling_params import SamplingParams

    from deploy.config.settings import AppArgs
    from deploy.core.messages import (
        GenerationParams,
        InferenceRequest,
        SamplingOptions,
        StoredFrames,
    )
    from deploy.llm_deployment import chat_messages, engine_inputs
    from deploy.video.decode import extract_file

    llm_settings = {"model": args.model, "video_pruning_rate": args.pruning_rate}
    profile: dict[str, Any] = {}
    if args.profile:  # what `vidserve run --profile cpu` extracts with
        from deploy.config.serve_config import Profile, app_args, load_config

        profile = app_args(load_config(profile=Profile(args.profile)))
    app = AppArgs.model_validate({**profile, "llm": {**profile.get("llm", {}), **llm_settings}})
    settings = app.extraction
    options = SamplingOptions(num_frames=args.frames, start_s=args.start_s, end_s=args.end_s)
    batch = extract_file(args.video, options, settings)
    request = InferenceRequest.ask(  # as the analyze endpoint asks
        args.question, StoredFrames.inline(batch, "frames-1"), GenerationParams(max_tokens=2)
    )
    # vidserve's own engine arguments for the setting (llm.video_pruning_rate)
    pruning = app.llm.vllm_engine_kwargs().get("video_pruning_rate", 0.0)
    llm = cpu_engine(args.model, pruning_rate=pruning)
    tokenizer = llm.get_tokenizer()
    prompt = tokenizer.apply_chat_template(
        chat_messages(request), tokenize=False, add_generation_prompt=True
    )
    inputs = engine_inputs(prompt, batch.meta, batch.frames, "frames-1")
    (output,) = llm.generate(inputs, SamplingParams(max_tokens=2, temperature=0.0))  # type: ignore[arg-type]
    ids = list(output.prompt_token_ids or [])
    result = json.dumps(
        {
            "shape": list(batch.frames.shape),
            "patch_factor": settings.patch_factor,
            "timestamps_s": batch.meta.timestamps_s,
            "prompt": tokenizer.decode(ids),
            "prompt_tokens": len(ids),
        }
    )
    Path(args.out).write_text(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
