"""vidserve against vLLM's own OpenAI server: the same question about the same video.

    python bench/vs_vllm.py [--requests 8] [--throughput-requests 16] [--frames 16]

One run, one after the other on this machine: first `python -m vllm.entrypoints.openai.api_server`
(vLLM's own server and its own video loader, frames sampled by `--media-io-kwargs`), then vidserve
(`make run`'s app on a local Ray) at `/v1/chat/completions`. Both serve the same model (the tiny
random Qwen2.5-VL unless VLLM_MODEL_PATH is set) with the same engine arguments (vidserve's
`llm` settings for the profile, passed to vLLM's server as flags, and vidserve's per-frame pixel
budget as vLLM's `--mm-processor-kwargs`), both get the video as the same
`file://` URL of a generated 60 s 720p H.264 clip, and the same question with `temperature: 0`.

Printed: p50 end-to-end latency at concurrency 1, throughput at concurrency 4, prompt and
completion tokens of each (the prompts must match within 10%: the same frames at the same
size), the ratios vidserve / vLLM; then vidserve's own split: engine time of the first question
about a video against a repeat (prefix and multimodal caches), and the Serve graph's overhead
(end to end minus the extractor's decoding and the engine's own time) p50.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deploy.cli import runner  # noqa: E402
from deploy.config import env  # noqa: E402
from deploy.config.serve_config import Profile, app_args, load_config  # noqa: E402
from deploy.config.settings import AppArgs  # noqa: E402
from deploy.dev.tiny_model import ensure_tiny_model  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.videos import write_h264  # noqa: E402

QUESTION = "What happens in this video?"
MAX_TOKENS = 16
START_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class Sample:
    seconds: float
    prompt_tokens: int
    completion_tokens: int
    body: dict[str, Any]


def engine_flags(engine_kwargs: dict[str, Any]) -> list[str]:
    """vLLM engine arguments as `vllm serve` flags (dicts as JSON, true booleans bare)."""
    flags: list[str] = []
    for name, value in engine_kwargs.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else f"--no-{name.replace('_', '-')}")
        elif isinstance(value, dict):
            flags += [flag, json.dumps(value)]
        else:
            flags += [flag, str(value)]
    return flags


def _body(model: str, video_url: str, frames: int, vidserve: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "video_url", "video_url": {"url": video_url}},
                    {"type": "text", "text": QUESTION},
                ],
            }
        ],
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "seed": 0,
    }
    if vidserve:
        body["video_options"] = {"num_frames": frames}
    return body


async def _ask(client: httpx.AsyncClient, body: dict[str, Any]) -> Sample:
    started = time.perf_counter()
    response = await client.post("/v1/chat/completions", json=body)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"HTTP {response.status_code}: {response.text[:500]}")
    answer = response.json()
    usage = answer["usage"]
    return Sample(elapsed, usage["prompt_tokens"], usage["completion_tokens"], answer)


async def _measure(
    url: str, body: dict[str, Any], requests: int, throughput_requests: int
) -> tuple[list[Sample], float, list[Sample]]:
    """(samples at concurrency 1, requests/s at concurrency 4, those samples)."""
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        await _ask(client, body)  # warm-up: the first decode and the first engine step
        sequential = [await _ask(client, body) for _ in range(requests)]
        limit = asyncio.Semaphore(4)

        async def bounded() -> Sample:
            async with limit:
                return await _ask(client, body)

        started = time.perf_counter()
        concurrent = await asyncio.gather(*(bounded() for _ in range(throughput_requests)))
        throughput = throughput_requests / (time.perf_counter() - started)
    return sequential, throughput, list(concurrent)


def _wait_http(url: str, process: subprocess.Popen[bytes] | None, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/v1/models", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise TimeoutError(f"{url} did not answer within {timeout_s:.0f}s")


def run_vllm(
    model: str, args: AppArgs, media_dir: Path, *, frames: int, seconds: float, log: Path
) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    engine = args.llm.vllm_engine_kwargs()
    command = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", model, "--served-model-name", "bench",
        "--host", "127.0.0.1", "--port", str(port),
        "--allowed-local-media-path", str(media_dir),
        # vLLM's loader samples at min(num_frames, fps x duration) with fps 2 by default (120
        # frames of 60 s): the rate is set so that it takes `frames` frames, as vidserve does.
        "--media-io-kwargs", json.dumps(
            {"video": {"num_frames": frames, "fps": frames / seconds + 1e-6}}
        ),
        # vidserve's per-frame pixel budget (extraction.min/max_pixels), for the same frame size.
        "--mm-processor-kwargs", json.dumps(
            {"min_pixels": args.extraction.min_pixels, "max_pixels": args.extraction.max_pixels}
        ),
        *engine_flags(engine),
    ]  # fmt: skip
    print("+", " ".join(command), flush=True)
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(url, process, START_TIMEOUT_S)
    except Exception:
        _stop(process)
        print(log.read_text()[-4000:])
        raise
    return url, process


def _stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _p50(samples: list[Sample]) -> float:
    return statistics.median(s.seconds for s in samples)


def _cache_rows(url: str, model: str, video_url: str, frames: int) -> dict[str, float]:
    """vidserve's engine time for a video's first question and for repeats, and the overhead."""

    async def run() -> dict[str, float]:
        async with httpx.AsyncClient(base_url=url, timeout=600) as client:
            # Other frames of the same video (a different count): new to every cache.
            first = await _ask(client, _body(model, video_url, frames - 2, vidserve=True))
            repeats = [
                await _ask(client, _body(model, video_url, frames - 2, vidserve=True))
                for _ in range(5)
            ]
        engine = [r.body["vidserve"]["timings"]["engine_s"] for r in repeats]
        overhead = [
            r.seconds
            - r.body["vidserve"]["timings"]["engine_s"]
            - r.body["vidserve"]["frames"]["decode_s"]
            for r in repeats
        ]
        return {
            "first_engine_s": first.body["vidserve"]["timings"]["engine_s"],
            "first_decode_s": first.body["vidserve"]["frames"]["decode_s"],
            "repeat_engine_s": statistics.median(engine),
            "overhead_s": statistics.median(overhead),
        }

    return asyncio.run(run())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8, help="at concurrency 1")
    parser.add_argument("--throughput-requests", type=int, default=16, help="at concurrency 4")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--profile", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the test video")
    options = parser.parse_args()

    media_dir = Path(tempfile.mkdtemp(prefix="vidserve-vs-vllm-"))
    print(f"generating a {options.seconds:.0f} s 720p H.264 video ...", flush=True)
    video = write_h264(media_dir / "clip.mp4", int(options.seconds * 30), 30.0, (1280, 720), gop=60)
    video_url = video.resolve().as_uri()
    print(f"video: {video.stat().st_size / 1e6:.1f} MB at {video_url}", flush=True)

    port = free_port()
    overlay: dict[str, Any] = {
        "http_options": {"host": "127.0.0.1", "port": port},
        "applications": [
            {
                "name": "vidserve",
                "args": {"url_fetch": {"local_dir": str(media_dir)}, "llm": {"model_id": "bench"}},
            }
        ],
    }
    config = load_config(profile=Profile(options.profile), extra_overlays=(overlay,))
    model = env.model_path()
    if model is None:
        model = str(ensure_tiny_model(env.cache_dir() / "tiny-qwen2.5-vl"))
        app_args(config)["llm"]["model"] = model
        print("model: the tiny random test model (set VLLM_MODEL_PATH for a real one)")
    args = AppArgs.model_validate(app_args(config))

    print("\n== vLLM's own server", flush=True)
    vllm_url, process = run_vllm(
        model,
        args,
        media_dir,
        frames=options.frames,
        seconds=options.seconds,
        log=media_dir / "vllm.log",
    )
    try:
        body = _body("bench", video_url, options.frames, vidserve=False)
        vllm = asyncio.run(_measure(vllm_url, body, options.requests, options.throughput_requests))
    finally:
        _stop(process)

    print("\n== vidserve", flush=True)
    runner.start_local_ray(metrics_port=free_port())
    try:
        runner.deploy(config)
        runner.wait_until_running(START_TIMEOUT_S, progress=print)
        url = f"http://127.0.0.1:{port}"
        _wait_http(url, None, 120)
        body = _body("bench", video_url, options.frames, vidserve=True)
        ours = asyncio.run(_measure(url, body, options.requests, options.throughput_requests))
        cache = _cache_rows(url, "bench", video_url, options.frames)
    finally:
        runner.shutdown()

    print(
        f"\nsame question, same {options.seconds:.0f} s 720p video, {options.frames} frames, "
        f"{MAX_TOKENS} tokens out; profile {options.profile}, {os.cpu_count()} cores; "
        f"{options.requests} requests at concurrency 1, {options.throughput_requests} at 4"
    )
    print(f"{'':<28} | {'vLLM serve':>10} | {'vidserve':>10} | {'vidserve / vLLM':>15}")
    print("-" * 72)
    rows = [
        ("p50 latency, conc. 1 (s)", _p50(vllm[0]), _p50(ours[0])),
        ("throughput, conc. 4 (req/s)", vllm[1], ours[1]),
        ("prompt tokens", vllm[0][0].prompt_tokens, ours[0][0].prompt_tokens),
        ("completion tokens", vllm[0][0].completion_tokens, ours[0][0].completion_tokens),
    ]
    for name, theirs, mine in rows:
        print(f"{name:<28} | {theirs:10.3f} | {mine:10.3f} | {mine / theirs:14.2f}x")
    prompt_ratio = ours[0][0].prompt_tokens / vllm[0][0].prompt_tokens
    print(
        f"prompt tokens within 10%: {'yes' if abs(prompt_ratio - 1) <= 0.10 else 'NO'}"
        f" ({prompt_ratio:.3f})"
    )
    print(f"\n{'vidserve, by stage':<44} | {'s':>8}")
    print("-" * 56)
    print(f"{'first question: extractor decoding':<44} | {cache['first_decode_s']:8.3f}")
    print(f"{'first question: engine':<44} | {cache['first_engine_s']:8.3f}")
    print(f"{'repeat (p50 of 5): engine':<44} | {cache['repeat_engine_s']:8.3f}")
    ratio = cache["repeat_engine_s"] / cache["first_engine_s"]
    print(f"{'repeat engine / first engine':<44} | {ratio:7.2f}x")
    print(f"{'Serve graph overhead p50 (e2e - stages)':<44} | {cache['overhead_s']:8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
