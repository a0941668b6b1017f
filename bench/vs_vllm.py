"""vidserve against vLLM's own OpenAI server: the same questions about the same videos.

    python bench/vs_vllm.py [--requests 8] [--throughput-requests 16] [--frames 16]
                            [--seconds 20] [--transport data|file] [--modes repeat distinct]
                            [--preset ultrafast|medium]

One run, one after the other on this machine: first `python -m vllm.entrypoints.openai.api_server`
(vLLM's own server and its own video loader, frames sampled by `--media-io-kwargs`), then vidserve
(`make run`'s app on a local Ray) at `/v1/chat/completions`. Both serve the same model (the tiny
random Qwen2.5-VL unless VLLM_MODEL_PATH is set) with the same engine arguments (vidserve's
`llm` settings for the profile, passed to vLLM's server as flags, and vidserve's per-frame pixel
budget as vLLM's `--mm-processor-kwargs`), and each gets the same generated 720p H.264 clips
(--seconds long, 2 Mbit/s; x264's --preset: ultrafast, the cheapest to decode and the default
here, or medium, x264's own default with B-frames, as most encoded files) in the same order,
as data URLs in the JSON body (--transport data, what a client without shared storage sends) or
as `file://` URLs, with the same question at `temperature: 0`.

Two modes, each measured on both servers: `repeat` asks about one video again and again (what the
caches are for), `distinct` about a video never seen before on every request (the cold path: most
traffic is a video sent once). Printed per mode: p50 end-to-end latency at concurrency 1,
throughput at concurrency 4, prompt and completion tokens (the prompts must match within 10%: the
same frames at the same size), the ratios vidserve / vLLM; then vidserve's own split of a cold
request: the extractor's decoding, the engine, and the Serve graph's overhead (end to end less
those).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
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

QUESTION = "What happens in this video?"
MAX_TOKENS = 16
START_TIMEOUT_S = 900.0
PRESETS = ("ultrafast", "medium")  # x264 presets make_videos encodes with


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
    url: str,
    warm: dict[str, Any],
    sequential: list[dict[str, Any]],
    concurrent: list[dict[str, Any]],
) -> tuple[list[Sample], float, list[Sample]]:
    """(samples at concurrency 1, requests/s at concurrency 4, those samples)."""
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        await _ask(client, warm)  # warm-up: the first decode and the first engine step
        one_at_a_time = [await _ask(client, body) for body in sequential]
        limit = asyncio.Semaphore(4)

        async def bounded(body: dict[str, Any]) -> Sample:
            async with limit:
                return await _ask(client, body)

        started = time.perf_counter()
        four_at_a_time = await asyncio.gather(*(bounded(b) for b in concurrent))
        throughput = len(concurrent) / (time.perf_counter() - started)
    return one_at_a_time, throughput, list(four_at_a_time)


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


def make_videos(
    directory: Path, count: int, seconds: float, preset: str = "ultrafast"
) -> list[Path]:
    """`count` distinct 720p H.264 clips (testsrc2, each its own hue: no two share a frame),
    2 Mbit/s with a keyframe every 2 s, made by ffmpeg (imageio-ffmpeg's binary) with x264's
    `preset`: ultrafast (no B-frames, the cheapest to decode) or medium (x264's default: B-frames,
    CABAC, deblocking, as most encoded files; about 3x the decoding per frame)."""
    import imageio_ffmpeg

    paths = []
    for n in range(count):
        path = directory / f"clip-{n:03d}.mp4"
        hue = (n * 360 / max(count, 1)) % 360
        subprocess.run(
            [
                imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi",
                "-i", f"testsrc2=size=1280x720:rate=30:duration={seconds:g},hue=h={hue:.1f}",
                "-c:v", "libx264", "-preset", preset, "-b:v", "2M", "-maxrate", "2M",
                "-bufsize", "4M", "-g", "60", "-pix_fmt", "yuv420p", str(path),
            ],
            check=True,
        )  # fmt: skip
        paths.append(path)
    return paths


def _url(path: Path, transport: str) -> str:
    if transport == "file":
        return path.resolve().as_uri()
    return "data:video/mp4;base64," + base64.b64encode(path.read_bytes()).decode()


@dataclass(frozen=True)
class Plan:
    """The bodies each mode sends, the same for both servers (vidserve's with video_options)."""

    warm: Path
    repeated: Path
    fresh: list[Path]  # requests + throughput_requests videos, each sent once
    requests: int

    def bodies(
        self, mode: str, model: str, frames: int, transport: str, vidserve: bool
    ) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
        def body(path: Path) -> dict[str, Any]:
            return _body(model, _url(path, transport), frames, vidserve)

        if mode == "repeat":
            same = body(self.repeated)
            return same, [same] * self.requests, [same] * (len(self.fresh) - self.requests)
        fresh = [body(p) for p in self.fresh]
        return body(self.warm), fresh[: self.requests], fresh[self.requests :]


def _stages(samples: list[Sample]) -> dict[str, float]:
    """vidserve's p50 split of its requests: decoding, engine, and the rest (the graph)."""
    decode = [s.body["vidserve"]["frames"]["decode_s"] for s in samples]
    engine = [s.body["vidserve"]["timings"]["engine_s"] for s in samples]
    rest = [s.seconds - d - e for s, d, e in zip(samples, decode, engine, strict=True)]
    return {
        "e2e_s": _p50(samples),
        "decode_s": statistics.median(decode),
        "engine_s": statistics.median(engine),
        "overhead_s": statistics.median(rest),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8, help="at concurrency 1")
    parser.add_argument("--throughput-requests", type=int, default=16, help="at concurrency 4")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--profile", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each test video")
    parser.add_argument("--transport", choices=["data", "file"], default="data")
    parser.add_argument(
        "--preset", choices=PRESETS, default=PRESETS[0],
        help="x264 preset of the clips: ultrafast (cheapest to decode) or medium (x264's default)",
    )  # fmt: skip
    parser.add_argument(
        "--modes", nargs="+", choices=["repeat", "distinct"], default=["repeat", "distinct"]
    )
    parser.add_argument(
        "--servers", nargs="+", choices=["vllm", "vidserve"], default=["vllm", "vidserve"],
        help="one of them alone: its rows only (to compare changes; the ratios need both)",
    )  # fmt: skip
    options = parser.parse_args()

    media_dir = Path(tempfile.mkdtemp(prefix="vidserve-vs-vllm-"))
    count = 2 + options.requests + options.throughput_requests
    print(
        f"generating {count} distinct {options.seconds:g} s 720p H.264 videos "
        f"(x264 {options.preset}) ...",
        flush=True,
    )
    videos = make_videos(media_dir, count, options.seconds, options.preset)
    plan = Plan(videos[0], videos[1], videos[2:], options.requests)
    print(f"each about {videos[0].stat().st_size / 1e6:.1f} MB, sent as {options.transport}")

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

    def run_modes(url: str, vidserve: bool) -> dict[str, tuple[list[Sample], float, list[Sample]]]:
        results = {}
        for mode in options.modes:
            warm, one, four = plan.bodies(
                mode, "bench", options.frames, options.transport, vidserve
            )
            print(f"  {mode} ...", flush=True)
            results[mode] = asyncio.run(_measure(url, warm, one, four))
        return results

    theirs: dict[str, tuple[list[Sample], float, list[Sample]]] = {}
    ours: dict[str, tuple[list[Sample], float, list[Sample]]] = {}
    if "vllm" in options.servers:
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
            theirs = run_modes(vllm_url, vidserve=False)
        finally:
            _stop(process)
    if "vidserve" in options.servers:
        print("\n== vidserve", flush=True)
        runner.start_local_ray(metrics_port=free_port())
        try:
            runner.deploy(config)
            runner.wait_until_running(START_TIMEOUT_S, progress=print)
            url = f"http://127.0.0.1:{port}"
            _wait_http(url, None, 120)
            ours = run_modes(url, vidserve=True)
        finally:
            runner.shutdown()
    print_tables(options, theirs, ours)
    return 0


Results = dict[str, tuple[list[Sample], float, list[Sample]]]


def print_tables(options: argparse.Namespace, theirs: Results, ours: Results) -> None:
    """The tables: both servers side by side, or one alone when only one ran."""
    if not (theirs and ours):
        for name, results in (("vLLM serve", theirs), ("vidserve", ours)):
            for mode, (one, rate, _) in results.items():
                print(f"{name} {mode}: p50 conc. 1 {_p50(one):.3f} s, conc. 4 {rate:.3f} req/s, "
                      f"prompt tokens {one[0].prompt_tokens}")  # fmt: skip
        return

    print(
        f"\n{options.frames} frames of {options.seconds:g} s 720p videos (x264 {options.preset}, "
        f"{options.transport} "
        f"URLs), {MAX_TOKENS} tokens out; profile {options.profile}, {os.cpu_count()} cores; "
        f"{options.requests} requests at concurrency 1, {options.throughput_requests} at 4"
    )
    print(f"{'':<36} | {'vLLM serve':>10} | {'vidserve':>10} | {'vidserve / vLLM':>15}")
    print("-" * 80)
    for mode in options.modes:
        (v_one, v_rate, _), (o_one, o_rate, _) = theirs[mode], ours[mode]
        label = "one video, again" if mode == "repeat" else "a new video each time"
        rows = [
            (f"{label}: p50 conc. 1 (s)", _p50(v_one), _p50(o_one)),
            (f"{label}: req/s conc. 4", v_rate, o_rate),
            (f"{label}: prompt tokens", v_one[0].prompt_tokens, o_one[0].prompt_tokens),
        ]
        for name, vllm_value, our_value in rows:
            ratio = our_value / vllm_value
            print(f"{name:<36} | {vllm_value:10.3f} | {our_value:10.3f} | {ratio:14.2f}x")
        prompt_ratio = o_one[0].prompt_tokens / v_one[0].prompt_tokens
        same = "yes" if abs(prompt_ratio - 1) <= 0.10 else "NO"
        print(f"{'':<36}   prompt tokens within 10%: {same} ({prompt_ratio:.3f})")
    print(f"\n{'vidserve, p50 by stage (s)':<36} | {'e2e':>7} | {'decode':>7} | {'engine':>7} | "
          f"{'graph':>7}")  # fmt: skip
    print("-" * 80)
    for mode in options.modes:
        for conc, samples in (("conc. 1", ours[mode][0]), ("conc. 4", ours[mode][2])):
            split = _stages(samples)
            print(f"{mode + ', ' + conc:<36} | {split['e2e_s']:7.3f} | {split['decode_s']:7.3f} | "
                  f"{split['engine_s']:7.3f} | {split['overhead_s']:7.3f}")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
