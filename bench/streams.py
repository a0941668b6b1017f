"""How many concurrent 720p streams one StreamIngest replica keeps in real time.

    python bench/streams.py [--counts 1 2 4 8] [--seconds 40] [--window-s 10] [--model-s 0.5]

For each count N: N ffmpeg publishers send a 720p30 H.264 camera clip (2 Mbit/s, a keyframe a
second, looped) in real time into a real RTSP server on loopback (RTSP::Server, as the tests
use), and one StreamWatcher (deploy/streams/watcher.py: what a StreamIngest replica runs, with
its decoder threads, windows and store on SQLite) watches all N at 1 window / --window-s,
--frames-per-window frames each. The model is not the replica's work: a stand-in answers each
caption after --model-s seconds (on a GPU a 7B model answers a window in about that), so the
table is the decoder's. A stream is in real time when the replica decoded at least 97% of the
frames the publishers sent in the measured span and dropped no window. Printed per N: the
replica's CPU (cores, this process: decoding, conversion, windowing, the store), the sources'
(the ffmpeg publishers and the RTSP server, sharing the machine's cores), frames decoded
against sent, windows recorded, dropped, and the lag from a window's end to its record (p50,
p99).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deploy.config.settings import AppArgs  # noqa: E402
from deploy.core.messages import InferenceRequest, InferenceResult  # noqa: E402
from deploy.jobs.store import open_store  # noqa: E402
from deploy.serving.backends import Routed  # noqa: E402
from deploy.streams.stream_spec import StreamSpec  # noqa: E402
from deploy.streams.stream_store import StreamStore  # noqa: E402
from deploy.streams.watcher import StreamWatcher  # noqa: E402
from tests.support.live import RtspServer, camera_clip  # noqa: E402

FPS = 30
REAL_TIME = 0.97  # share of the sent frames decoded


class TimedModel:
    """Answers like the backend policy, after `delay_s` (the model's time, not the replica's)."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s

    async def answer(self, request: InferenceRequest) -> Routed[InferenceResult]:
        await asyncio.sleep(self.delay_s)
        return Routed(InferenceResult("a caption", "stand-in", "vllm", 100, 8), None)


class Lags:
    """StreamMetrics that keeps the lags and counts (the replica's own are Ray's)."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self.outcomes: dict[str, int] = {}

    def streams(self, by_state: dict[str, int], decoding: int) -> None:
        del by_state, decoding

    def window(self, outcome: str, lag_s: float | None = None) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        if lag_s is not None and outcome == "captioned":
            self.lags.append(lag_s)

    def reconnected(self) -> None:
        return

    def alert(self) -> None:
        return

    def delivery(self, outcome: str) -> None:
        del outcome


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _run(
    count: int, args: argparse.Namespace, server: RtspServer, clip: Path
) -> dict[str, Any]:
    publishers = [server.publisher(clip, f"cam{count}-{i}").start() for i in range(count)]
    with tempfile.TemporaryDirectory() as data:
        app = AppArgs.model_validate(
            {
                "jobs": {"data_dir": data},
                "url_fetch": {"allow_hosts": [f"127.0.0.1:{server.port}"]},
                "streams": {
                    "rtsp_transport": "udp",
                    "window_s": args.window_s,
                    "frames_per_window": args.frames_per_window,
                    "max_streams_per_replica": max(count, 1),
                    "claim_interval_s": 0.2,
                },
            }
        )
        store = StreamStore(open_store(app.store, app.jobs))
        metrics = Lags()
        watcher = StreamWatcher(store, TimedModel(args.model_s), app, "bench", metrics=metrics)  # type: ignore[arg-type]
        for i in range(count):
            store.create(f"s{i}", "", StreamSpec(url=server.url(f"cam{count}-{i}")))
        watcher.start()
        deadline = time.monotonic() + 60
        while len(watcher.runners) < count or any(
            r.frames_decoded == 0 for r in watcher.runners.values()
        ):
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(watcher.runners)} of {count} streams started")
            await asyncio.sleep(0.2)
        await asyncio.sleep(args.window_s)  # past the first, partial window
        me = psutil.Process()
        pids = [p.pid for p in publishers] + [server.pid]  # the publishers and the RTSP server
        others = [psutil.Process(pid) for pid in pids if pid is not None]
        before = me.cpu_times()
        other_before = sum(sum(p.cpu_times()[:2]) for p in others)
        frames_before = sum(r.frames_decoded for r in watcher.runners.values())
        metrics.lags.clear()
        metrics.outcomes.clear()
        started = time.monotonic()
        await asyncio.sleep(args.seconds)
        span = time.monotonic() - started
        after = me.cpu_times()
        frames = sum(r.frames_decoded for r in watcher.runners.values()) - frames_before
        other = sum(sum(p.cpu_times()[:2]) for p in others) - other_before
        outcomes = dict(metrics.outcomes)
        lags = list(metrics.lags)
        await watcher.stop()
    for publisher in publishers:
        publisher.stop()
    sent = count * FPS * span
    cores = (after.user + after.system - before.user - before.system) / span
    dropped = outcomes.get("dropped", 0)
    return {
        "streams": count,
        "cores": cores,
        "others": other / span,
        "decoded": frames / sent,
        "windows": outcomes.get("captioned", 0),
        "dropped": dropped,
        "lag_p50": statistics.median(lags) if lags else float("nan"),
        "lag_p99": _percentile(lags, 0.99),
        "real_time": frames >= REAL_TIME * sent and dropped == 0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--window-s", type=float, default=10.0)
    parser.add_argument("--frames-per-window", type=int, default=4)
    parser.add_argument("--model-s", type=float, default=0.5)
    args = parser.parse_args()
    clip = camera_clip(
        Path(tempfile.gettempdir()) / "vidserve-bench-720p.mp4", 20, "1280x720", FPS, "2M"
    )
    server = RtspServer().start()
    rows = []
    try:
        for count in args.counts:
            rows.append(asyncio.run(_run(count, args, server, clip)))
            print(f"  {count} streams done", file=sys.stderr, flush=True)
    finally:
        server.stop()
    print(
        f"720p{FPS} H.264 over RTSP, 1 window / {args.window_s:g} s of {args.frames_per_window} "
        f"frames, model stand-in {args.model_s:g} s; {psutil.cpu_count()} cores; "
        f"{args.seconds:g} s measured per row"
    )
    header = (
        "streams | replica cores | sources' cores | decoded / sent | windows | dropped | "
        "lag p50 s | lag p99 s | real time"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['streams']:7d} | {r['cores']:13.2f} | {r['others']:14.2f} | "
            f"{r['decoded']:14.3f} | {r['windows']:7d} | {r['dropped']:7d} | "
            f"{r['lag_p50']:9.2f} | {r['lag_p99']:9.2f} | {'yes' if r['real_time'] else 'NO'}"
        )
    kept = [r["streams"] for r in rows if r["real_time"]]
    print(f"most streams kept in real time by one replica here: {max(kept) if kept else 0}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
