"""Chaos and soak: bounded mixed load while replicas are killed, then hours-like steady load with
every replica's memory sampled.

    python bench/chaos.py [--seconds 90] [--concurrency 4] [--soak-minutes 20] [--faults]

Starts the app on a local Ray (CPU profile, the tiny model unless VLLM_MODEL_PATH is set) with
the Ollama stand-in (tests/support/ollama_stub.py) as its fallback. Chaos: during the load it
kills, in turn, a FrameExtractor replica, the Ingress replica, the vLLM replica (as crashes: no
graceful shutdown) and stops the Ollama server for a while. Every request must be answered: a
200, or a 503/504 in the JSON shape, within its bound; none may hang. Then the app must recover
by itself (vLLM ready again, each kind of request answered 200). Soak: steady load for
--soak-minutes, the resident memory of every replica sampled; growth after the warm-up is reported.
Prints a table of requests sent, answered by status, p50/p99 and max RSS per replica, then a
verdict; exits 1 when a rule was broken (a hang, an answer outside the rule, no recovery, a
replica's memory grown past the soak's bound: SOAK_GROWTH_RATIO, SOAK_GROWTH_BYTES).
--faults: the scenarios of bench/faults.py on an app with API keys and a PostgreSQL jobs store
(the primary SIGKILLed, the ingress killed mid-job, the database stopped mid-job, the disk
filling, a client holding its share), one row each: sent, answered, refused, lost (must be 0).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import faults  # noqa: E402  (bench/faults.py, beside this file)

from deploy.cli import runner  # noqa: E402
from deploy.config import env  # noqa: E402
from deploy.config.serve_config import Profile, app_args, load_config  # noqa: E402
from deploy.dev.tiny_model import ensure_tiny_model  # noqa: E402
from tests.support.load import (  # noqa: E402
    KINDS,
    LoadClient,
    LoadReport,
    Media,
    kill_replica,
    replica_rss,
    run_load,
    wait_ready,
)
from tests.support.ollama_stub import VISION, OllamaStub  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.postgres import PostgresServer  # noqa: E402
from tests.support.videos import write_h264  # noqa: E402

MODEL_ID = "tiny-qwen2.5-vl"
# The bound of one request: the longest the app may take (vLLM's timeout, then Ollama's) and a
# margin. A request past it is a hang.
LLM_TIMEOUT_S, OLLAMA_TIMEOUT_S = 45.0, 20.0
BOUND_S = LLM_TIMEOUT_S + OLLAMA_TIMEOUT_S + 30.0
# Answers allowed while replicas die: 200, or the JSON 503/504 of a stage that is down.
ALLOWED = {200, 503, 504}
RECOVERY_S = 420.0  # a vLLM replica on 2 CPU cores loads in about 70 s; Serve restarts it


@dataclass
class App:
    url: str
    stub: OllamaStub
    faults: list[str] = field(default_factory=list)
    metrics_port: int = 0  # Ray's Prometheus endpoint: http://127.0.0.1:PORT/metrics


def config_for(port: int, ollama_url: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    overlay: dict[str, Any] = {
        "http_options": {"host": "127.0.0.1", "port": port},
        "applications": [
            {
                "name": "vidserve",
                "args": {
                    "llm": {"model_id": MODEL_ID, "request_timeout_s": LLM_TIMEOUT_S},
                    "ollama": {"host": ollama_url, "request_timeout_s": OLLAMA_TIMEOUT_S},
                    "backends": {"circuit_breaker": {"failure_threshold": 2, "open_s": 5}},
                    **(extra or {}),
                },
            }
        ],
    }
    config = load_config(profile=Profile.CPU, extra_overlays=(overlay,))
    if env.model_path() is None:
        app_args(config)["llm"]["model"] = str(
            ensure_tiny_model(env.cache_dir() / "tiny-qwen2.5-vl")
        )
    return config


@contextmanager
def running_app(
    start_timeout_s: float = 900.0, extra: dict[str, Any] | None = None
) -> Iterator[App]:
    """The app on its own local Ray with the Ollama stand-in; everything stopped after."""
    stub = OllamaStub({"qwen2.5vl:7b": VISION})
    stub.start()
    port, metrics_port = free_port(), free_port()
    runner.start_local_ray(metrics_port=metrics_port)
    try:
        runner.deploy(config_for(port, stub.url, extra))
        runner.wait_until_running(start_timeout_s, progress=print)
        url = f"http://127.0.0.1:{port}"
        asyncio.run(wait_ready(url, start_timeout_s))
        yield App(url, stub, metrics_port=metrics_port)
    finally:
        runner.shutdown()
        stub.stop()


async def inject_faults(app: App, spacing_s: float, ollama_down_s: float) -> None:
    """Kill, in turn: an extractor replica, the ingress replica, the vLLM replica; then stop
    the Ollama server for `ollama_down_s`."""
    for deployment in ("FrameExtractor", "Ingress", "VLLM"):
        await asyncio.sleep(spacing_s)
        name = await asyncio.to_thread(kill_replica, deployment)
        app.faults.append(f"{time.strftime('%H:%M:%S')} killed {name}")
        print(app.faults[-1], flush=True)
    await asyncio.sleep(spacing_s)
    app.stub.stop()
    app.faults.append(f"{time.strftime('%H:%M:%S')} stopped the Ollama server")
    print(app.faults[-1], flush=True)
    await asyncio.sleep(ollama_down_s)
    app.stub.restart()
    app.faults.append(f"{time.strftime('%H:%M:%S')} Ollama server back")
    print(app.faults[-1], flush=True)


@dataclass
class ChaosResult:
    load: LoadReport
    recovered_s: float
    after: dict[str, int]  # kind -> status of one request once recovered
    max_rss: dict[str, int]


def chaos(
    app: App, media: Media, *, seconds: float, requests: int, concurrency: int
) -> ChaosResult:
    client = LoadClient(app.url, MODEL_ID, media, BOUND_S)
    spacing = seconds / 5
    peaks: dict[str, int] = {}

    def sample(report: LoadReport) -> None:
        for name, rss in replica_rss().items():
            peaks[name] = max(peaks.get(name, 0), rss)

    async def run() -> LoadReport:
        faults = asyncio.create_task(inject_faults(app, spacing, ollama_down_s=spacing / 2))
        report = await run_load(
            client, requests=requests, seconds=seconds, concurrency=concurrency, on_progress=sample
        )
        await faults
        return report

    report = asyncio.run(run())
    recovered = asyncio.run(wait_ready(app.url, RECOVERY_S))
    after = asyncio.run(_one_of_each(client))
    return ChaosResult(report, recovered, after, peaks)


async def _one_of_each(client: LoadClient) -> dict[str, int]:
    import httpx

    async with httpx.AsyncClient(timeout=None) as http:
        return {kind: (await client.one(http, kind)).status for kind in KINDS}


@dataclass
class SoakResult:
    load: LoadReport
    samples: list[tuple[float, dict[str, int]]]  # (seconds from start, rss by replica)

    def growth(self, warmup_s: float) -> dict[str, tuple[int, int, int]]:
        """Per replica: RSS after the warm-up, the largest after it, and at the end."""
        later = [(t, s) for t, s in self.samples if t >= warmup_s] or self.samples
        first, last = later[0][1], later[-1][1]
        return {
            name: (first.get(name, 0), max(s.get(name, 0) for _, s in later), last.get(name, 0))
            for name in sorted(first)
        }


def soak(app: App, media: Media, *, minutes: float, concurrency: int) -> SoakResult:
    client = LoadClient(app.url, MODEL_ID, media, BOUND_S)
    samples: list[tuple[float, dict[str, int]]] = []
    started = time.monotonic()

    async def sampler(stop: asyncio.Event) -> None:
        while not stop.is_set():
            samples.append((time.monotonic() - started, replica_rss()))
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=15)

    async def run() -> LoadReport:
        stop = asyncio.Event()
        task = asyncio.create_task(sampler(stop))
        report = await run_load(
            client, requests=10**9, seconds=minutes * 60, concurrency=concurrency
        )
        stop.set()
        await task
        samples.append((time.monotonic() - started, replica_rss()))
        return report

    return SoakResult(asyncio.run(run()), samples)


# The soak's bound: a replica's memory at the end may exceed what it held after the warm-up by
# this share plus this many bytes (allocator slack, caches that fill once), not more.
SOAK_GROWTH_RATIO = 0.2
SOAK_GROWTH_BYTES = 64 * 2**20


def chaos_violations(result: ChaosResult, faults: list[str]) -> list[str]:
    """What broke the rule: a fault not injected, an answer outside it, no recovery."""
    found = [f"{len(faults)} of 5 faults injected"] if len(faults) != 5 else []
    found += [f"{o.kind}: {o.status} {o.detail[:200]}" for o in result.load.problems(ALLOWED)]
    found += [f"after recovery {k}: {v}" for k, v in result.after.items() if v != 200]
    return found


# A steady slope is a leak even when the run is too short to cross the bound above: past this
# many bytes an hour (fitted over the samples after the warm-up), the soak fails.
SOAK_SLOPE_BYTES_PER_HOUR = 32 * 2**20


def slopes(result: SoakResult, warmup_s: float) -> dict[str, float]:
    """Bytes an hour each replica grew, least squares over the samples after the warm-up."""
    later = [(t, s) for t, s in result.samples if t >= warmup_s]
    fitted: dict[str, float] = {}
    for name in sorted(later[0][1]) if later else []:
        points = [(t, s[name]) for t, s in later if name in s]
        if len(points) < 3:
            continue
        mean_t = sum(t for t, _ in points) / len(points)
        mean_v = sum(v for _, v in points) / len(points)
        spread = sum((t - mean_t) ** 2 for t, _ in points)
        if spread > 0:
            covariance = sum((t - mean_t) * (v - mean_v) for t, v in points)
            fitted[name] = covariance / spread * 3600
    return fitted


def soak_violations(result: SoakResult, warmup_s: float) -> list[str]:
    return (
        [
            f"{name} grows {_mb(int(slope))} MiB an hour"
            for name, slope in slopes(result, warmup_s).items()
            if slope > SOAK_SLOPE_BYTES_PER_HOUR
        ]
        + [
            f"{name} grew from {_mb(first)} to {_mb(last)} MiB"
            for name, (first, _, last) in result.growth(warmup_s).items()
            if last > first * (1 + SOAK_GROWTH_RATIO) + SOAK_GROWTH_BYTES
        ]
        + [f"{o.kind}: {o.status} {o.detail[:200]}" for o in result.load.problems(ALLOWED)]
    )


def _mb(value: int) -> str:
    return f"{value / 2**20:.0f}"


def print_chaos(result: ChaosResult, faults: list[str]) -> None:
    print("\nchaos: faults injected")
    for fault in faults:
        print(f"  {fault}")
    load = result.load
    statuses = load.by_status()
    print(
        f"\n{'phase':<8} | {'sent':>5} | {'200':>5} | {'503':>5} | {'504':>5} | {'other':>5} | "
        f"{'hung':>4} | {'p50 s':>6} | {'p99 s':>6}"
    )
    print("-" * 72)
    other = sum(n for s, n in statuses.items() if s not in (200, 503, 504, 0))
    print(
        f"{'chaos':<8} | {len(load.outcomes):>5} | {statuses[200]:>5} | {statuses[503]:>5} | "
        f"{statuses[504]:>5} | {other:>5} | {statuses[0]:>4} | {load.percentile(0.5):6.2f} | "
        f"{load.percentile(0.99):6.2f}"
    )
    print(
        f"\nrecovered (vLLM ready again) {result.recovered_s:.0f} s after the load; then one of "
        f"each kind: {result.after}"
    )
    problems = load.problems(ALLOWED)
    print(
        f"answers outside the rule (a hang, another status, an error not in JSON): {len(problems)}"
    )
    for outcome in problems[:10]:
        print(f"  {outcome.kind} {outcome.status} {outcome.detail[:160]}")
    print(f"\n{'replica (deployment, process)':<44} | {'max RSS MiB':>11}")
    print("-" * 60)
    for name, peak in sorted(result.max_rss.items()):
        print(f"{name:<44} | {_mb(peak):>11}")


def print_soak(result: SoakResult, minutes: float, warmup_s: float) -> None:
    load = result.load
    print(f"\nsoak: {minutes:g} min, {load.summary()}")
    names = sorted(result.samples[0][1]) if result.samples else []
    print("\nRSS over time, MiB (a plateau or a slope)")
    print(f"{'min':>5} | " + " | ".join(f"{name.split(' pid')[0]:>14}" for name in names))
    next_mark = 0.0
    for seconds, sizes in result.samples:
        if seconds >= next_mark or (seconds, sizes) == result.samples[-1]:
            cells = " | ".join(f"{_mb(sizes.get(name, 0)):>14}" for name in names)
            print(f"{seconds / 60:5.1f} | {cells}")
            next_mark = seconds + max(60.0, minutes * 60 / 10)
    print(
        f"\n{'replica':<44} | {'RSS after warm-up MiB':>21} | {'max MiB':>7} | "
        f"{'end MiB':>7} | {'end / warm-up':>13}"
    )
    print("-" * 104)
    for name, (first, peak, last) in result.growth(warmup_s).items():
        ratio = last / first if first else 0.0
        print(f"{name:<44} | {_mb(first):>21} | {_mb(peak):>7} | {_mb(last):>7} | {ratio:13.2f}")
    print("\nslope after the warm-up (least squares):")
    for name, slope in slopes(result, warmup_s).items():
        print(f"  {name}: {slope / 2**20:+.0f} MiB an hour")


def run_faults(media: Media, folder: Path) -> list[faults.Row]:
    """The fault scenarios (bench/faults.py), in turn, on one app of their own."""
    postgres = PostgresServer()
    postgres.start()
    local_dir = folder / "local"
    local_dir.mkdir(parents=True, exist_ok=True)
    # 2 minutes of video: 30 chunks of 4 s, so a fault lands while the job runs.
    video = write_h264(local_dir / "long.mp4", 240, 2.0, (160, 120))
    data_dir = folder / "jobs"
    data_dir.mkdir(parents=True, exist_ok=True)
    extra = faults.args_for(postgres.url, data_dir, local_dir)
    floor = int(extra["jobs"]["min_free_bytes"])
    try:
        with running_app(extra=extra) as app:
            client = LoadClient(app.url, MODEL_ID, media, BOUND_S)

            async def scenarios() -> list[faults.Row]:
                return [
                    await faults.primary_killed(app.url, client),
                    await faults.ingress_killed(app.url, video),
                    await faults.database_stopped(app.url, video, postgres),
                    await faults.disk_filling(app.url, data_dir, floor, media.video, client),
                    await faults.client_share(app.url, MODEL_ID, client),
                ]

            return asyncio.run(scenarios())
    finally:
        postgres.remove()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=100.0, help="length of the chaos load (0: no chaos)"
    )
    parser.add_argument("--requests", type=int, default=100_000, help="most requests in chaos")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--soak-minutes", type=float, default=0.0, help="0: no soak")
    parser.add_argument("--warmup-s", type=float, default=120.0, help="soak: before the baseline")
    parser.add_argument("--faults", action="store_true", help="the fault scenarios (faults.py)")
    options = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="vidserve-chaos-"))
    media = Media.make(folder)
    violations: list[str] = []
    if options.faults:
        rows = run_faults(media, folder)
        faults.print_rows(rows)
        violations += faults.violations(rows)
    if not options.seconds and not options.soak_minutes:
        print("\nverdict: " + ("ok" if not violations else "FAILED"))
        for violation in violations:
            print(f"  {violation}")
        return 1 if violations else 0
    with running_app() as app:
        if options.seconds:
            result = chaos(
                app,
                media,
                seconds=options.seconds,
                requests=options.requests,
                concurrency=options.concurrency,
            )
            print_chaos(result, app.faults)
            violations += chaos_violations(result, app.faults)
        if options.soak_minutes:
            soaked = soak(app, media, minutes=options.soak_minutes, concurrency=options.concurrency)
            print_soak(soaked, options.soak_minutes, options.warmup_s)
            violations += soak_violations(soaked, options.warmup_s)
    print("\nverdict: " + ("ok" if not violations else "FAILED"))
    for violation in violations:
        print(f"  {violation}")
    return 1 if violations else 0


if __name__ == "__main__":
    raise SystemExit(main())
