"""A long video summarized as a job with 1, then 2 FrameExtractor replicas.

    python bench/jobs.py [--minutes 30] [--chunk-s 30] [--frames 8] [--extractors 1 2]

Generates (once, kept in VIDSERVE_CACHE_DIR) a 720p H.264 video of --minutes, starts the app on
a local Ray (CPU profile, the tiny model unless VLLM_MODEL_PATH is set, the Ollama stand-in as
fallback), then for each extractor count: sets the FrameExtractor deployment to that many
replicas (Serve updates it alone), submits a `summarize` job by file:// URL and follows its
events. Prints a table: wall time, time to the first chunk event, chunks per second, and the
ratio against the first row (measured in the same run).
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.chaos import config_for  # noqa: E402
from deploy.cli import runner  # noqa: E402
from deploy.config import env  # noqa: E402
from deploy.config.serve_config import app_args  # noqa: E402
from tests.support.load import wait_ready  # noqa: E402
from tests.support.ollama_stub import VISION, OllamaStub  # noqa: E402
from tests.support.ports import free_port  # noqa: E402


def long_video(minutes: float) -> Path:
    """A 720p 30 fps test pattern of `minutes`, made by ffmpeg (imageio-ffmpeg's binary)."""
    import imageio_ffmpeg

    path = env.cache_dir() / f"bench-{minutes:g}min-720p.mp4"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"generating {path} ...", flush=True)
    partial = path.with_suffix(".partial.mp4")
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error",
            "-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate=30:duration={minutes * 60:g}",
            # 2 Mbit/s, a keyframe every 2 s: what a screen or camera recording looks like
            "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "2M", "-maxrate", "2M",
            "-bufsize", "4M", "-g", "60", "-pix_fmt", "yuv420p",
            str(partial),
        ],
        check=True,
    )  # fmt: skip
    partial.rename(path)
    return path


def with_extractors(config: dict[str, Any], replicas: int) -> dict[str, Any]:
    changed = copy.deepcopy(config)
    for deployment in changed["applications"][0]["deployments"]:
        if deployment["name"] == "FrameExtractor":
            deployment.pop("autoscaling_config", None)
            deployment["num_replicas"] = replicas
    return changed


def run_job(url: str, video: Path, chunk_s: float, frames: int) -> dict[str, float]:
    with httpx.Client(base_url=url, timeout=None) as http:
        started = time.monotonic()
        created = http.post(
            "/v1/video/jobs",
            json={"url": video.as_uri(), "task": "summarize", "chunk_s": chunk_s,
                  "frames_per_chunk": frames},
        )  # fmt: skip
        created.raise_for_status()
        first = None
        name = ""
        result: dict[str, Any] = {}
        with http.stream("GET", f"/v1/video/jobs/{created.json()['id']}/events") as events:
            for line in events.iter_lines():
                if line.startswith("event: "):
                    name = line.removeprefix("event: ")
                elif line.startswith("data: ") and name == "chunk" and first is None:
                    first = time.monotonic() - started
                elif line.startswith("data: ") and name == "result":
                    result = json.loads(line.removeprefix("data: "))
        wall = time.monotonic() - started
    if result.get("state") != "succeeded":
        raise RuntimeError(f"the job did not succeed: {result.get('error')}")
    chunks = result["progress"]["chunks_done"]
    return {
        "wall_s": wall,
        "first_s": first or wall,
        "chunks": chunks,
        "chunks_per_s": chunks / wall,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--chunk-s", type=float, default=30.0)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--extractors", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--in-flight", type=int, default=4, help="jobs.max_chunks_in_flight")
    options = parser.parse_args()
    video = long_video(options.minutes)
    stub = OllamaStub({"qwen2.5vl:7b": VISION})
    stub.start()
    port = free_port()
    config = config_for(port, stub.url)
    args = app_args(config)
    args["url_fetch"] = {"local_dir": str(video.parent)}
    args["jobs"] = {
        "data_dir": tempfile.mkdtemp(prefix="vidserve-bench-jobs-"),
        "max_chunks_in_flight": options.in_flight,
        "caption_max_tokens": 32,
        "summary_max_tokens": 64,
    }
    url = f"http://127.0.0.1:{port}"
    rows: list[tuple[int, dict[str, float]]] = []
    runner.start_local_ray(metrics_port=free_port())
    try:
        for replicas in options.extractors:
            runner.deploy(with_extractors(config, replicas))
            runner.wait_until_running(900, progress=print)
            import asyncio

            asyncio.run(wait_ready(url, 900))
            print(f"{replicas} extractor(s): summarizing {video.name} ...", flush=True)
            rows.append((replicas, run_job(url, video, options.chunk_s, options.frames)))
    finally:
        runner.shutdown()
        stub.stop()
    print(
        f"\n{options.minutes:g} min 720p video, chunks of {options.chunk_s:g} s, "
        f"{options.frames} frames each, {options.in_flight} chunks in flight per job\n"
    )
    print(f"{'extractors':>10} | {'chunks':>6} | {'wall s':>7} | {'first chunk s':>13} | "
          f"{'chunks/s':>8} | {'vs first row':>12}")  # fmt: skip
    print("-" * 75)
    base = rows[0][1]["chunks_per_s"] if rows else 1.0
    for replicas, row in rows:
        print(
            f"{replicas:>10} | {row['chunks']:>6.0f} | {row['wall_s']:7.1f} | "
            f"{row['first_s']:13.2f} | {row['chunks_per_s']:8.2f} | "
            f"{row['chunks_per_s'] / base:11.2f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
