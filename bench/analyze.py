"""Latency of POST /v1/video/analyze by stage, and the cost of moving frames to the engine.

    python bench/analyze.py [--requests 16] [--profile cpu|gpu] [--frames 16]

Starts the app on a local Ray (the tiny model unless VLLM_MODEL_PATH is set), sends a generated
60 s 720p H.264 video with 16 frames asked, N requests at concurrency 1 and 8, and prints p50/p95
of extraction, inference, end-to-end HTTP time and the Serve graph's overhead (end-to-end minus
the stages). Then it measures, in the same run, moving one request's frames to the engine through
Ray's object store as arrays (the path vidserve uses) against JPEG-encoding and decoding them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import ray

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deploy.cli import runner  # noqa: E402
from deploy.config import env  # noqa: E402
from deploy.config.serve_config import Profile, app_args, load_config  # noqa: E402
from deploy.config.settings import AppArgs  # noqa: E402
from deploy.core.messages import MediaKind, SamplingOptions  # noqa: E402
from deploy.dev.tiny_model import ensure_tiny_model  # noqa: E402
from deploy.video import extract  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.videos import write_h264  # noqa: E402

ANALYZE = "/v1/video/analyze"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _one(client: httpx.AsyncClient, video: bytes, frames: int) -> dict[str, float]:
    started = time.perf_counter()
    response = await client.post(
        ANALYZE,
        files={"file": ("bench.mp4", video, "video/mp4")},
        data={
            "prompt": "What happens in this video?",
            "num_frames": str(frames),
            "max_tokens": "16",
        },
    )
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    timings = response.json()["timings"]
    return {
        "extract": timings["extract_s"],
        "inference": timings["inference_s"],
        "http": elapsed,
        "overhead": elapsed - timings["extract_s"] - timings["inference_s"],
    }


async def _load(
    url: str, video: bytes, frames: int, requests: int, concurrency: int
) -> list[dict[str, float]]:
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        await _one(client, video, frames)  # warm-up, not counted

        async def bounded() -> dict[str, float]:
            async with limit:
                return await _one(client, video, frames)

        return await asyncio.gather(*(bounded() for _ in range(requests)))


def _transfer_costs(
    video: bytes, frames: int, args: AppArgs, repeats: int = 20
) -> list[tuple[str, float, float]]:
    """(what, ms per request, bytes) for the array path and the JPEG path, same frames."""
    batch = extract(video, SamplingOptions(num_frames=frames), args.extraction, MediaKind.VIDEO)

    def via_object_store() -> None:
        ray.get(ray.put(batch))

    def via_jpeg() -> None:
        encoded = [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 90])[1] for f in batch.frames]
        ray.get(ray.put(encoded))
        np.stack([cv2.imdecode(e, cv2.IMREAD_COLOR) for e in encoded])

    rows = []
    for name, fn in (
        ("arrays via object store (vidserve)", via_object_store),
        ("JPEG encode+decode", via_jpeg),
    ):
        fn()
        started = time.perf_counter()
        for _ in range(repeats):
            fn()
        rows.append(
            (name, (time.perf_counter() - started) / repeats * 1000, float(batch.frames.nbytes))
        )
    shape = "x".join(map(str, batch.frames.shape))
    print(f"\nframes moved per request: {shape} uint8 = {batch.frames.nbytes / 1e6:.1f} MB")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--profile", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the test video")
    options = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="vidserve-bench-"))
    print(f"generating a {options.seconds:.0f} s 720p H.264 video ...", flush=True)
    video = write_h264(
        tmp / "bench.mp4", int(options.seconds * 30), 30.0, (1280, 720), gop=60
    ).read_bytes()
    print(f"video: {len(video) / 1e6:.1f} MB", flush=True)

    port = free_port()
    overlay: dict[str, Any] = {"http_options": {"host": "127.0.0.1", "port": port}}
    config = load_config(profile=Profile(options.profile), extra_overlays=(overlay,))
    if env.model_path() is None:
        app_args(config)["llm"]["model"] = str(
            ensure_tiny_model(env.cache_dir() / "tiny-qwen2.5-vl")
        )
        print("model: the tiny random test model (set VLLM_MODEL_PATH for a real one)")
    args = AppArgs.model_validate(app_args(config))

    runner.start_local_ray(metrics_port=free_port())  # not 8080: a vidserve run may be up
    try:
        runner.deploy(config)
        runner.wait_until_running(1800, progress=print)
        url = f"http://127.0.0.1:{port}"
        results = {
            c: asyncio.run(_load(url, video, options.frames, options.requests, c)) for c in (1, 8)
        }
        transfer = _transfer_costs(video, options.frames, args)
    finally:
        runner.shutdown()

    print(
        f"\nPOST {ANALYZE}: {options.requests} requests, {options.frames} frames, "
        f"profile {options.profile}, {os.cpu_count()} cores"
    )
    print(
        f"{'concurrency':>11} | {'stage':<9} | {'p50 s':>8} | {'p95 s':>8} | {'p50 / http p50':>14}"
    )
    print("-" * 62)
    for concurrency, rows in results.items():
        http_p50 = statistics.median(r["http"] for r in rows)
        for stage in ("extract", "inference", "overhead", "http"):
            values = [r[stage] for r in rows]
            p50, p95 = _pct(values, 0.5), _pct(values, 0.95)
            print(
                f"{concurrency:>11} | {stage:<9} | {p50:8.3f} | {p95:8.3f} | {p50 / http_p50:14.2f}"
            )
    heading = "moving one request's frames to engine"
    print(f"\n{heading:<42} | {'ms':>7} | {'vs arrays':>9}")
    print("-" * 64)
    baseline = transfer[0][1]
    for name, ms, _ in transfer:
        print(f"{name:<42} | {ms:7.2f} | {ms / baseline:8.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
