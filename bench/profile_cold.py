"""Where a cold request's CPU goes: every replica sampled by py-spy while vidserve answers
questions about videos it has never seen.

    python bench/profile_cold.py [--videos 40] [--concurrency 4] [--frames 16] [--seconds 20]
                                 [--transport data|file] [--preset ultrafast|medium]
                                 [--rate 100] [--out docs/profiles]

Starts the app on a local Ray (CPU profile, the tiny model unless VLLM_MODEL_PATH is set), warms
it with one request, then sends --videos distinct generated 720p clips (each once: the cold path)
to `/v1/chat/completions`, --concurrency at a time. Measured meanwhile: the CPU seconds (psutil:
every thread, native code included) of each process of the graph (Serve's HTTP proxy and
controller, the Ingress, every FrameExtractor, the VLLM replica and its engine: vLLM's EngineCore
and model Worker processes), of every other process on the machine, and of the whole machine;
and, with --rate > 0, `py-spy record` samples each graph process (one flame graph each,
`<out>/<process>.svg`, py-spy's own SVG), from which the stages its Python threads were in are
printed (inclusive samples of named functions: JSON parsing, base64, hashing, Ray's
serialization, decoding, resizing, the HF processor, the model's forward ...). py-spy needs
ptrace (root, or CAP_SYS_PTRACE) and costs CPU itself: --rate 0 for the CPU times alone.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.vs_vllm import MAX_TOKENS, PRESETS, make_videos  # noqa: E402
from deploy.cli import runner  # noqa: E402
from deploy.config import env  # noqa: E402
from deploy.config.serve_config import Profile, app_args, load_config  # noqa: E402
from deploy.dev.tiny_model import ensure_tiny_model  # noqa: E402
from tests.support.ports import free_port  # noqa: E402

# Stages, as the functions that do them (matched against py-spy's frame names, inclusive).
STAGES: dict[str, tuple[str, ...]] = {
    "HTTP body read": ("receive (starlette", "read_body", "_receive"),
    "JSON parse": ("loads (json", "json_loads", "model_validate_json"),
    "base64 decode": ("b64decode", "a2b_base64"),
    "hashing": ("digest (deploy/video/cache.py", "sha256", "blake2"),
    "Ray serialize / object store": ("serialize", "deserialize", "put_object", "_put", "pickle"),
    "demux + decode (PyAV/OpenCV)": ("decode (av", "av_read", "frame_reader", "read_frames"),
    "resize": ("resize", "smart_resize"),
    "HF processor": ("_call_hf_processor", "__call__ (transformers", "preprocess"),
    "vision encoder": ("visual", "VisionTransformer", "vision_tower"),
    "model forward": ("forward (vllm/model_executor",),
    "engine scheduling": ("schedule (vllm", "step (vllm/v1/engine"),
}


def graph_processes() -> dict[str, int]:
    """`name -> pid` of the proxy, every replica and the vLLM engine core (a replica's child)."""
    found: dict[str, int] = {}
    for process in psutil.process_iter(["pid", "cmdline"]):
        cmdline = process.info.get("cmdline") or []
        title = cmdline[0] if cmdline else ""
        if title.startswith("ray::ServeReplica:"):
            name = title.removeprefix("ray::").split(".")[0].rsplit(":", 1)[-1]
        elif title.startswith("ray::ProxyActor"):
            name = "ProxyActor"
        elif title.startswith("ray::ServeController"):
            name = "ServeController"
        else:
            continue
        label = name if name not in found else f"{name}-{process.info['pid']}"
        found[label] = process.info["pid"]
        if name == "VLLM":  # its engine: vLLM's EngineCore process, and the model's Worker
            for child in process.children(recursive=True):
                title = " ".join(child.cmdline()[:1]) or child.name()
                for part in ("EngineCore", "Worker"):
                    if part in title:
                        found[f"VLLM-{part}"] = child.pid
    return found


_TITLE = re.compile(r"<title>(.*?) \(([\d,]+) samples?, ([\d.]+)%\)</title>")


def read_flamegraph(svg: Path) -> tuple[int, dict[str, int]]:
    """(all samples, inclusive samples per stage) from py-spy's SVG (each frame's title says
    its samples; a stage counts a matching frame once, not again under another match)."""
    text = svg.read_text(errors="replace")
    total = 0
    frames: list[tuple[str, int]] = []
    for match in _TITLE.finditer(text):
        name, samples = html.unescape(match.group(1)), int(match.group(2).replace(",", ""))
        if name == "all":
            total = samples
        frames.append((name, samples))
    per_stage: dict[str, int] = defaultdict(int)
    for stage, needles in STAGES.items():
        # The outermost matching frames: py-spy writes parents before children; a child of a
        # counted frame is skipped by keeping only the largest matches that sum below the total.
        matched = sorted((s for n, s in frames if any(k in n for k in needles)), reverse=True)
        counted = 0
        for samples in matched:
            if counted + samples > total:
                break
            counted += samples
        per_stage[stage] = min(counted, total)
    return total, per_stage


def _cpu_seconds(processes: dict[str, int]) -> dict[str, float]:
    """User + system CPU seconds each process (with its threads) has used so far."""
    seconds = {}
    for name, pid in processes.items():
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        seconds[name] = times.user + times.system
    return seconds


def _busy(times: Any) -> float:
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def _other_cpu(graph: dict[str, int]) -> dict[str, float]:
    """CPU seconds of every other process on the machine, by name (summed)."""
    mine = set(graph.values())
    seconds: dict[str, float] = defaultdict(float)
    for process in psutil.process_iter(["pid", "name", "cpu_times"]):
        times = process.info.get("cpu_times")
        if process.info["pid"] in mine or times is None:
            continue
        seconds[process.info["name"] or "?"] += times.user + times.system
    return seconds


async def load(url: str, bodies: list[dict[str, Any]], concurrency: int) -> list[float]:
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:

        async def one(body: dict[str, Any]) -> float:
            async with limit:
                started = time.perf_counter()
                response = await client.post("/v1/chat/completions", json=body)
                response.raise_for_status()
                return time.perf_counter() - started

        return list(await asyncio.gather(*(one(b) for b in bodies)))


def main() -> int:
    from bench.vs_vllm import _body, _url

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each video")
    parser.add_argument("--transport", choices=["data", "file"], default="data")
    parser.add_argument(
        "--preset", choices=PRESETS, default=PRESETS[0],
        help="x264 preset of the clips (bench/vs_vllm.py's make_videos)",
    )  # fmt: skip
    parser.add_argument(
        "--rate", type=int, default=100, help="py-spy samples per second (0: CPU times only)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "profiles")
    options = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))

    media = Path(tempfile.mkdtemp(prefix="vidserve-profile-"))
    print(
        f"generating {options.videos + 1} distinct {options.seconds:g} s 720p videos "
        f"(x264 {options.preset}) ..."
    )
    videos = make_videos(media, options.videos + 1, options.seconds, options.preset)
    bodies = [_body("bench", _url(v, options.transport), options.frames, True) for v in videos]
    port = free_port()
    overlay = {
        "http_options": {"host": "127.0.0.1", "port": port},
        "applications": [
            {"name": "vidserve", "args": {"url_fetch": {"local_dir": str(media)},
                                          "llm": {"model_id": "bench"}}}
        ],
    }  # fmt: skip
    config = load_config(profile=Profile.CPU, extra_overlays=(overlay,))
    if env.model_path() is None:
        app_args(config)["llm"]["model"] = str(
            ensure_tiny_model(env.cache_dir() / "tiny-qwen2.5-vl")
        )
    url = f"http://127.0.0.1:{port}"
    options.out.mkdir(parents=True, exist_ok=True)
    runner.start_local_ray(metrics_port=free_port())
    try:
        runner.deploy(config)
        runner.wait_until_running(900, progress=print)
        asyncio.run(load(url, bodies[:1], 1))  # warm-up: the first decode, the first step
        processes = graph_processes()
        print("sampling:", ", ".join(f"{n} ({p})" for n, p in processes.items()), flush=True)
        spies = {
            name: subprocess.Popen(
                [
                    spy,
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    str(options.rate),
                    "--nonblocking",
                    "--format",
                    "flamegraph",
                    "--output",
                    str(options.out / f"{name}.svg"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for name, pid in processes.items()
            if options.rate > 0
        }
        time.sleep(2)  # py-spy attached
        before = _cpu_seconds(processes)
        machine_before = psutil.cpu_times()
        others_before = _other_cpu(processes)
        started = time.perf_counter()
        latencies = asyncio.run(load(url, bodies[1:], options.concurrency))
        wall = time.perf_counter() - started
        after = _cpu_seconds(processes)
        machine = _busy(psutil.cpu_times()) - _busy(machine_before)
        others = {k: v - others_before.get(k, 0.0) for k, v in _other_cpu(processes).items()}
        for process in spies.values():
            process.send_signal(2)  # SIGINT: py-spy writes its graph and exits
        for name, process in spies.items():
            _, err = process.communicate(timeout=60)
            if process.returncode not in (0, -2, 130):
                print(f"py-spy on {name} failed: {err.decode(errors='replace')[-500:]}")
    finally:
        runner.shutdown()

    latencies.sort()
    print(f"\n{options.videos} distinct {options.seconds:g} s 720p videos (x264 {options.preset}, "
          f"{options.transport} "
          f"URLs), {options.frames} frames, {MAX_TOKENS} tokens, concurrency "
          f"{options.concurrency}: {options.videos / wall:.2f} req/s, p50 "
          f"{latencies[len(latencies) // 2]:.3f} s")  # fmt: skip
    cpu = {name: after.get(name, 0.0) - before.get(name, 0.0) for name in processes}
    used = sum(cpu.values())
    print(f"CPU: {used:.1f} s of the graph's processes in {wall:.1f} s ({used / wall:.2f} cores), "
          f"{used / options.videos:.3f} CPU-s a request; the whole machine {machine / wall:.2f} "
          f"of {psutil.cpu_count()} cores busy")  # fmt: skip
    top_others = sorted(others.items(), key=lambda kv: -kv[1])[:5]
    print("  outside the graph (Ray's own processes, py-spy, this client), CPU-s a request: "
          + ", ".join(f"{n} {s / options.videos:.3f}" for n, s in top_others))  # fmt: skip
    graphs = {n: read_flamegraph(options.out / f"{n}.svg") for n in processes
              if options.rate > 0 and (options.out / f"{n}.svg").is_file()}  # fmt: skip
    print(f"\n{'process':<14} | {'CPU-s/req':>9} | {'of CPU':>6} | {'samples':>7} | "
          "where its Python threads were (inclusive share of its samples)")  # fmt: skip
    print("-" * 110)
    for name in sorted(processes, key=lambda n: -cpu[n]):
        total, stages = graphs.get(name, (0, {}))
        top = sorted(((s, n) for n, s in stages.items() if s), reverse=True)[:4]
        where = ", ".join(f"{n} {s / max(total, 1):.0%}" for s, n in top)
        per_request, share = cpu[name] / options.videos, cpu[name] / max(used, 1e-9)
        print(f"{name:<14} | {per_request:9.3f} | {share:6.0%} | {total:7d} | {where}")

    print(
        f"\nflame graphs: {options.out}/<process>.svg  (note: py-spy samples the Python "
        "threads: idle waiting counts only with --idle, not set here)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
