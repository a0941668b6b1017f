"""A 1-minute 720p video asked about at concurrency 1, 4 and 16: what a GPU node delivers.

    python bench/gpu_load.py [--concurrency 1 4 16] [--requests-per-level 2] [--frames 16]
                             [--profile gpu|cpu] [--seconds 60] [--max-tokens 64]

Run on a GPU machine by bench/gpu.sh (which checks the machine first). Starts the app on a local
Ray with the profile's settings (gpu: the real vLLM engine on the GPU, VLLM_MODEL_PATH the
model; cpu: the tiny model, a dry run of the script), generates distinct 60 s 720p H.264 clips
(each sent once: the cold path), and at each concurrency sends `concurrency x
--requests-per-level` streamed chat questions as data URLs. Printed per level: videos per minute,
time to first token p50/p95 (first streamed content), end-to-end p50, the decode share (the
extractor's decoding / end to end) and the engine share (from the frames being ready to the last
token / end to end), p50 over the level's requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.vs_vllm import _url, make_videos  # noqa: E402
from deploy.cli import runner  # noqa: E402
from deploy.config import env  # noqa: E402
from deploy.config.serve_config import Profile, app_args, load_config  # noqa: E402
from deploy.dev.tiny_model import ensure_tiny_model  # noqa: E402
from tests.support.ports import free_port  # noqa: E402


async def _streamed(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, float]:
    started = time.perf_counter()
    first: float | None = None
    extra: dict[str, Any] = {}
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {(await response.aread())[:300]!r}")
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line.removeprefix("data: "))
            if "error" in event:
                raise RuntimeError(f"the stream failed: {event['error']}")
            if first is None and event["choices"] and event["choices"][0]["delta"].get("content"):
                first = time.perf_counter() - started
            extra = event.get("vidserve") or extra
    e2e = time.perf_counter() - started
    frames = extra.get("frames", {})
    ready = frames.get("extract_s", 0.0) + frames.get("download_s", 0.0)
    return {
        "e2e_s": e2e,
        "ttft_s": first if first is not None else e2e,
        "decode_share": frames.get("decode_s", 0.0) / e2e,
        "engine_share": max(0.0, e2e - ready) / e2e,
    }


async def level(url: str, bodies: list[dict[str, Any]], concurrency: int) -> dict[str, float]:
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=900) as client:

        async def one(body: dict[str, Any]) -> dict[str, float]:
            async with limit:
                return await _streamed(client, body)

        started = time.perf_counter()
        rows = await asyncio.gather(*(one(b) for b in bodies))
        wall = time.perf_counter() - started
    ttft = sorted(r["ttft_s"] for r in rows)
    return {
        "videos_per_min": 60 * len(rows) / wall,
        "ttft_p50": statistics.median(ttft),
        "ttft_p95": ttft[min(len(ttft) - 1, round(0.95 * (len(ttft) - 1)))],
        "e2e_p50": statistics.median(r["e2e_s"] for r in rows),
        "decode_share": statistics.median(r["decode_share"] for r in rows),
        "engine_share": statistics.median(r["engine_share"] for r in rows),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests-per-level", type=int, default=2, help="x concurrency")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--profile", choices=["gpu", "cpu"], default="gpu")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each video")
    parser.add_argument("--max-tokens", type=int, default=64)
    options = parser.parse_args()

    counts = [c * options.requests_per_level for c in options.concurrency]
    media = Path(tempfile.mkdtemp(prefix="vidserve-gpu-bench-"))
    print(
        f"generating {1 + sum(counts)} distinct {options.seconds:g} s 720p videos ...", flush=True
    )
    videos = make_videos(media, 1 + sum(counts), options.seconds)
    port = free_port()
    overlay = {"http_options": {"host": "127.0.0.1", "port": port}}
    config = load_config(profile=Profile(options.profile), extra_overlays=(overlay,))
    if env.model_path() is None and options.profile == "cpu":
        app_args(config)["llm"]["model"] = str(
            ensure_tiny_model(env.cache_dir() / "tiny-qwen2.5-vl")
        )
    model = app_args(config)["llm"].get("model_id") or "unknown"
    url = f"http://127.0.0.1:{port}"

    def body(path: Path) -> dict[str, Any]:
        content = [
            {"type": "video_url", "video_url": {"url": _url(path, "data")}},
            {"type": "text", "text": "Describe what happens in this video, in order."},
        ]
        return {
            "model": served,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": options.max_tokens,
            "temperature": 0,
            "stream": True,
            "video_options": {"num_frames": options.frames},
        }

    results = []
    runner.start_local_ray(metrics_port=free_port())
    try:
        runner.deploy(config)
        runner.wait_until_running(1800, progress=print)
        served = httpx.get(f"{url}/v1/models", timeout=30).json()["data"][0]["id"]
        asyncio.run(level(url, [body(videos[0])], 1))  # warm-up
        start = 1
        for concurrency, count in zip(options.concurrency, counts, strict=True):
            print(f"concurrency {concurrency}: {count} videos ...", flush=True)
            batch = [body(v) for v in videos[start : start + count]]
            start += count
            results.append((concurrency, asyncio.run(level(url, batch, concurrency))))
    finally:
        runner.shutdown()

    print(f"\n{options.seconds:g} s 720p videos, each once, {options.frames} frames, "
          f"{options.max_tokens} tokens out, streamed; model {served or model}, profile "
          f"{options.profile}")  # fmt: skip
    header = ("concurrency", "videos/min", "TTFT p50 s", "TTFT p95 s", "e2e p50 s",
              "decode share", "engine share")  # fmt: skip
    print(" | ".join(f"{h:>12}" for h in header))
    print("-" * 98)
    for concurrency, row in results:
        cells = (str(concurrency), f"{row['videos_per_min']:.1f}", f"{row['ttft_p50']:.3f}",
                 f"{row['ttft_p95']:.3f}", f"{row['e2e_p50']:.3f}",
                 f"{row['decode_share']:.0%}", f"{row['engine_share']:.0%}")  # fmt: skip
        print(" | ".join(f"{c:>12}" for c in cells), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
