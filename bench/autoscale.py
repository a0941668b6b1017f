"""The extractor deployment scaling up under load and back down after it, on a real Serve.

    python bench/autoscale.py [--concurrency 6] [--max-requests 400] [--max-load-s 120]

Starts the app on a local Ray with Ollama as its only backend, answered by the Ollama stand-in
of the tests (tests/support/ollama_stub.py, instant answers), so that frame extraction is the stage
under load. The FrameExtractor deployment gets an autoscaling config made to react within
seconds (min 1, max --max-replicas, target 1 ongoing request, short delays) and Serve's
autoscaling metric push intervals are cut to 0.5 s for this run only (environment variables
of this process, which the local Ray's workers inherit; serve_config.yaml is untouched).

The load is a bounded loop: --concurrency uploads at a time of a generated 720p video, each
asking for frames at another start time (a cache miss every time), until the deployment reaches
its max replicas, --max-requests were sent or --max-load-s passed. Then it waits, idle, for the
deployment to go back to its min (at most --max-idle-s). Prints the replica count as it changes
and a table: how long scaling up and back down took, and the requests sent and answered.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Read by Serve's controller, replicas and handles when they start: set before Ray starts.
PUSH_INTERVALS = {
    "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5",
    "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5",
}
os.environ.update(PUSH_INTERVALS)

from ray import serve  # noqa: E402
from ray.serve.schema import ReplicaState  # noqa: E402

from deploy.cli import runner  # noqa: E402
from deploy.config.serve_config import APP_NAME, Profile, load_config  # noqa: E402
from deploy.frame_extractor import DEPLOYMENT_NAME as EXTRACTOR  # noqa: E402
from tests.support.ollama_stub import OllamaStub  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.videos import write_h264  # noqa: E402

ANALYZE = "/v1/video/analyze"
POLL_S = 0.25


@dataclass
class Load:
    sent: int = 0
    answered: int = 0
    errors: dict[int, int] = field(default_factory=dict)


def running_extractors() -> int:
    app = serve.status().applications.get(APP_NAME)
    if app is None or EXTRACTOR not in app.deployments:
        return 0
    states = app.deployments[EXTRACTOR].replica_states
    return states.get(ReplicaState.RUNNING, 0)


def _config(port: int, ollama_url: str, max_replicas: int) -> dict[str, Any]:
    overlay: dict[str, Any] = {
        "http_options": {"host": "127.0.0.1", "port": port},
        "applications": [
            {
                "name": APP_NAME,
                "args": {"ollama": {"host": ollama_url}},
                "deployments": [
                    {
                        "name": EXTRACTOR,
                        "max_ongoing_requests": 2,
                        "ray_actor_options": {"num_cpus": 1},
                        "autoscaling_config": {
                            "min_replicas": 1,
                            "max_replicas": max_replicas,
                            "target_ongoing_requests": 1,
                            "upscale_delay_s": 2,
                            "downscale_delay_s": 10,
                            "look_back_period_s": 3,
                            "metrics_interval_s": 0.5,
                        },
                    }
                ],
            }
        ],
    }
    return load_config(profile=Profile.OLLAMA, extra_overlays=(overlay,))


async def _drive(url: str, video: bytes, options: argparse.Namespace, load: Load) -> float:
    """Uploads at --concurrency until max replicas, --max-requests or --max-load-s; returns
    the seconds from the first request to the max replica count (nan when never reached)."""
    started = time.monotonic()
    reached_max = float("nan")
    stop = asyncio.Event()

    async def worker(client: httpx.AsyncClient) -> None:
        while not stop.is_set() and load.sent < options.max_requests:
            load.sent += 1
            start_s = (load.sent % 200) * 0.1  # another cache key each time
            response = await client.post(
                ANALYZE,
                files={"file": ("bench.mp4", video, "video/mp4")},
                data={"prompt": "What happens?", "num_frames": "32", "start_s": f"{start_s:.1f}"},
            )
            if response.status_code == 200:
                load.answered += 1
            else:
                load.errors[response.status_code] = load.errors.get(response.status_code, 0) + 1

    async def watch() -> None:
        nonlocal reached_max
        last = -1
        while not stop.is_set():
            replicas = await asyncio.to_thread(running_extractors)
            elapsed = time.monotonic() - started
            if replicas != last:
                print(f"  load {elapsed:6.1f} s: {replicas} extractor replica(s)", flush=True)
                last = replicas
            if replicas >= options.max_replicas and math.isnan(reached_max):
                reached_max = elapsed
                stop.set()
            if elapsed > options.max_load_s or load.sent >= options.max_requests:
                stop.set()
            await asyncio.sleep(POLL_S)

    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        workers = [asyncio.create_task(worker(client)) for _ in range(options.concurrency)]
        await watch()
        await asyncio.gather(*workers)
    return reached_max


def _wait_down(max_idle_s: float) -> float:
    """Seconds from the end of the load until one extractor replica is left (nan: never)."""
    started = time.monotonic()
    last = -1
    while time.monotonic() - started < max_idle_s:
        replicas = running_extractors()
        if replicas != last:
            print(f"  idle {time.monotonic() - started:6.1f} s: {replicas} extractor replica(s)")
            last = replicas
        if replicas == 1:
            return time.monotonic() - started
        time.sleep(POLL_S)
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=6)
    parser.add_argument("--max-replicas", type=int, default=3)
    parser.add_argument("--max-requests", type=int, default=400)
    parser.add_argument("--max-load-s", type=float, default=120.0)
    parser.add_argument("--max-idle-s", type=float, default=120.0)
    options = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="vidserve-autoscale-"))
    print("generating a 30 s 720p H.264 video ...", flush=True)
    video = write_h264(tmp / "bench.mp4", 900, 30.0, (1280, 720), gop=60).read_bytes()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the stand-in's access log
    stub = OllamaStub()
    stub.start()
    port = free_port()
    config = _config(port, stub.url, options.max_replicas)
    runner.start_local_ray(metrics_port=free_port())  # not 8080: a vidserve run may be up
    load = Load()
    try:
        runner.deploy(config)
        runner.wait_until_running(600, progress=print)
        print(f"load: {options.concurrency} uploads at a time (autoscaling pushes every 0.5 s)")
        load_started = time.monotonic()
        up_s = asyncio.run(_drive(f"http://127.0.0.1:{port}", video, options, load))
        load_s = time.monotonic() - load_started
        down_s = _wait_down(options.max_idle_s)
    finally:
        runner.shutdown()
        stub.stop()

    print(f"\n{EXTRACTOR} autoscaling: min 1, max {options.max_replicas}, target 1 ongoing")
    print(f"{'phase':<34} | {'seconds':>8}")
    print("-" * 45)
    print(f"{'load start -> ' + str(options.max_replicas) + ' replicas':<34} | {up_s:8.1f}")
    print(f"{'load (bounded loop) in all':<34} | {load_s:8.1f}")
    print(f"{'load end -> 1 replica':<34} | {down_s:8.1f}")
    print(f"requests sent {load.sent}, answered {load.answered}, errors {load.errors or 'none'}")
    return 1 if math.isnan(up_s) or math.isnan(down_s) or load.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
