"""The `vidserve` command.

vidserve run [--profile auto|gpu|cpu|ollama] [--config F] [--port 8000] [--set KEY=VALUE]
vidserve config [--profile ...] [--set ...] [--yaml]   each setting and where it came from
vidserve models [--gpu-memory-gb N --gpus K]         the model catalog, what fits the GPUs
vidserve doctor [--profile ...] [--ray-address A]    check the setup; say what to change
vidserve download MODEL [--revision R] [--local-dir D]  fetch a model ahead of time
vidserve analyze FILE_OR_URL --prompt P [--json]     ask a running vidserve
vidserve summarize FILE_OR_URL [--task chapters]     a long video as a job, chapters as they come
vidserve reindex [--drop-other-models]               vectors of library search, after a
                                                     change of search.model
vidserve kuberay [--check]                           k8s/'s generated files
vidserve tiny-model PATH                             build the tiny random test model

Exit codes: 0 success; 1 a problem found (doctor), a refused request (analyze) or a failed
download; 2 a usage or configuration error; 3 the service unreachable (analyze).
"""

from __future__ import annotations

import argparse
import logging
import platform
import shutil
import signal
import sys
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from deploy.config import env
from deploy.config.serve_config import (
    BASE_CONFIG,
    Profile,
    app_args,
    bind_safely,
    load_config,
)

TINY_MODEL_WARNING = (
    "No model is configured, so vidserve serves a tiny random Qwen2.5-VL built locally: "
    "its answers are MEANINGLESS. Set VLLM_MODEL_PATH to a real model (a Hugging Face id such "
    "as Qwen/Qwen2.5-VL-7B-Instruct, a local directory or a Hugging Face cache snapshot)."
)
START_TIMEOUT_S = 1800.0


def detect_profile() -> Profile:
    """GPU when an NVIDIA driver answers; on macOS Ollama alone; else vLLM's CPU build."""
    if shutil.which("nvidia-smi"):
        return Profile.GPU
    return Profile.OLLAMA if platform.system() == "Darwin" else Profile.CPU


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    if env.hf_hub_offline():
        return False
    try:
        urllib.request.urlopen("https://huggingface.co", timeout=timeout_s).close()
    except (urllib.error.URLError, OSError):
        return False
    return True


def _cached(model: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(model, "config.json"), str)


def needs_tiny_model(config: dict[str, Any], profile: Profile) -> bool:
    """No model configured (VLLM_MODEL_PATH) and no real one can run: without a GPU, or on a
    GPU offline with the configured model not cached."""
    from deploy.config.settings import AppArgs, Backend, ModelSourceKind, classify_model_source

    if env.model_path() is not None:
        return False
    args = app_args(config)
    if Backend.VLLM not in AppArgs.from_args(args).backends.order:
        return False
    if profile is not Profile.GPU:
        return True
    model = str(args.get("llm", {}).get("model", env.DEFAULT_MODEL))
    is_hub_model = classify_model_source(model) is ModelSourceKind.HF_ID
    return is_hub_model and not _cached(model) and not _hub_reachable()


def choose_model(config: dict[str, Any], profile: Profile) -> str | None:
    """Point the app at the tiny model when none is configured and no real one can run.

    Returns the warning to show, or None when the configured model is used."""
    from deploy.dev.tiny_model import ensure_tiny_model

    if not needs_tiny_model(config, profile):
        return None
    llm = app_args(config).setdefault("llm", {})
    llm["model"] = str(ensure_tiny_model(env.cache_dir() / "tiny-qwen2.5-vl"))
    return TINY_MODEL_WARNING


def _resolve_profile(name: str) -> Profile:
    return detect_profile() if name == "auto" else Profile(name)


def _sets(args: argparse.Namespace) -> dict[str, Any]:
    from deploy.cli.config_show import parse_sets

    return parse_sets(args.set or [])


def _set_overlays(sets: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    """--set values as the last overlay on the Serve config."""
    from deploy.cli.config_show import sets_overlay

    return (sets_overlay(sets),)


def cmd_config(args: argparse.Namespace) -> int:
    from deploy.cli.config_show import origins, render
    from deploy.config.settings import AppArgs

    profile = _resolve_profile(args.profile)
    sets = _sets(args)
    config = load_config(args.config, profile, _set_overlays(sets))
    if args.yaml:
        yaml.safe_dump(config, sys.stdout, sort_keys=False)
        return 0
    resolved = AppArgs.from_args(app_args(config))
    print(f"# profile {profile.value}: {args.config} and its overlay; environment; --set")
    print(render(origins(args.config, profile, sets, resolved)))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from deploy.cli.models import fake_gpus, footer, speech_table, table
    from deploy.models.gpus import find_gpus

    gpus = fake_gpus(args.gpu_memory_gb, args.gpus) if args.gpu_memory_gb else find_gpus()
    print(table(gpus))
    print()
    print(footer(gpus))
    print()
    print(speech_table())
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from deploy.cli.doctor import Context, render, run_checks

    profile = _resolve_profile(args.profile)
    ctx = Context(
        config_file=args.config,
        profile=profile,
        overlays=_set_overlays(_sets(args)),
        ray_address=args.ray_address,
        uses_tiny_model=lambda config: needs_tiny_model(config, profile),
    )
    findings = run_checks(ctx)
    print(render(findings))
    return 1 if any(f.level == "problem" for f in findings) else 0


def cmd_download(args: argparse.Namespace) -> int:
    from deploy.cli.download import DownloadError, download

    try:
        done = download(args.model, args.revision, args.local_dir)
    except DownloadError as exc:
        print(f"vidserve: {exc}", file=sys.stderr)
        return 1
    print(f"{done.repo_id} is at {done.path}")
    print(f"use it: VLLM_MODEL_PATH={done.path}  (or llm.model: {done.repo_id})")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from deploy.cli.analyze import Request, run

    request = Request(
        server=args.server,
        source=args.source,
        prompt=args.prompt,
        api_key=args.api_key,
        model=args.model,
        num_frames=args.num_frames,
        max_tokens=args.max_tokens,
        as_json=args.json,
    )
    return run(request)


def cmd_summarize(args: argparse.Namespace) -> int:
    from deploy.cli.summarize import Job, run

    job = Job(
        server=args.server,
        source=args.source,
        task=args.task,
        api_key=args.api_key,
        chunk_s=args.chunk_s,
        frames_per_chunk=args.frames_per_chunk,
        as_json=args.json,
    )
    return run(job)


def cmd_reindex(args: argparse.Namespace) -> int:
    from deploy.cli.reindex import Reindex, run
    from deploy.config.settings import AppArgs

    profile = _resolve_profile(args.profile)
    config = load_config(args.config, profile, tuple(_set_overlays(_sets(args))))
    app = AppArgs.from_args(app_args(config))
    return run(Reindex(app, batch=args.batch, drop_other_models=args.drop_other_models))


def cmd_run(args: argparse.Namespace) -> int:
    from deploy.cli import runner

    profile = _resolve_profile(args.profile)
    port = args.port or env.http_port()
    overlays = ({"http_options": {"port": port}}, *_set_overlays(_sets(args)))
    config = load_config(args.config, profile, overlays)
    print(f"vidserve: profile {profile.value} ({args.config.name} + overlay)", flush=True)
    exposure = bind_safely(config)
    if exposure:
        print(f"vidserve: {exposure}", flush=True)
    print(f"vidserve: {_describe_backends(app_args(config))}", flush=True)
    warning = choose_model(config, profile)
    if warning:
        print(f"\n*** {warning}\n", flush=True)
    problem = _model_problem(config)
    if problem:
        print(f"vidserve: the model cannot load: {problem}", file=sys.stderr)
        return 1

    def _stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    try:
        runner.start_local_ray(metrics_port=env.metrics_port())
        runner.deploy(config)
        print("vidserve: starting (the engine loads the model; this takes a while)", flush=True)
        runner.wait_until_running(START_TIMEOUT_S, progress=lambda line: print(line, flush=True))
        _print_ready(port, env.metrics_port())
        _block()
    except KeyboardInterrupt:
        print("\nvidserve: stopping", flush=True)
    except runner.DeployFailed as exc:
        print(f"vidserve: the app did not start: {exc.reason}", file=sys.stderr, flush=True)
        return 1
    finally:
        runner.shutdown()
    print("vidserve: stopped", flush=True)
    return 0


def _model_problem(config: dict[str, Any]) -> str | None:
    from deploy.config.settings import AppArgs, Backend
    from deploy.models.startup_errors import preflight

    args = AppArgs.from_args(app_args(config))
    return preflight(args.llm.model) if Backend.VLLM in args.backends.order else None


def _describe_backends(args: dict[str, Any]) -> str:
    from deploy.config.settings import AppArgs, Backend

    parsed = AppArgs.from_args(args)
    order = parsed.backends.order
    text = "backends " + " -> ".join(b.value for b in order)
    if Backend.OLLAMA in order:
        text += f" (Ollama at {parsed.ollama.host}, model {parsed.ollama_model})"
    return text


def _block() -> None:
    """Sleep until Ctrl-C (SIGINT) or SIGTERM raises KeyboardInterrupt."""
    while True:
        signal.pause()


def _print_ready(port: int, metrics_port: int) -> None:
    url = f"http://127.0.0.1:{port}"
    print(
        f"\nvidserve is ready at {url}\n\n"
        "Ask a question about a video:\n"
        "  curl -F file=@video.mp4 -F prompt='What happens in this video?' \\\n"
        f"       {url}/v1/video/analyze\n"
        f"\nMetrics for Prometheus: http://127.0.0.1:{metrics_port}/metrics "
        "(make monitor starts one)\n"
        "\nPress Ctrl-C to stop.\n",
        flush=True,
    )


def cmd_tiny_model(args: argparse.Namespace) -> int:
    from deploy.dev.tiny_model import build_tiny_model

    print(build_tiny_model(args.path, seed=args.seed))
    return 0


def cmd_kuberay(args: argparse.Namespace) -> int:
    from deploy.cli import kuberay

    if args.check:
        stale = kuberay.stale()
        for path in stale:
            print(
                f"stale: {path.relative_to(kuberay.ROOT)} (run `vidserve kuberay`)", file=sys.stderr
            )
        return 1 if stale else 0
    for path in kuberay.write():
        print(f"wrote {path.relative_to(kuberay.ROOT)}")
    return 0


def _add_summarize(sub: Any) -> None:
    summarize = sub.add_parser(
        "summarize", help="summarize a long video as a job: progress over chunks, chapters"
    )
    summarize.add_argument("source", help="a video file, or an http(s) / file:// URL")
    summarize.add_argument(
        "--task", choices=("chapters", "summarize", "captions"), default="chapters"
    )
    summarize.add_argument("--chunk-s", type=float, help="seconds per chunk (server default 30)")
    summarize.add_argument("--frames-per-chunk", type=int)
    summarize.add_argument("--server", default=env.client_url(), help="VIDSERVE_URL")
    summarize.add_argument("--api-key", default=env.client_api_key(), help="VIDSERVE_API_KEY")
    summarize.add_argument("--json", action="store_true", help="print the finished job as JSON")
    summarize.set_defaults(func=cmd_summarize)


def _add_reindex(sub: Any, app_options: Any) -> None:
    reindex = sub.add_parser(
        "reindex", help="embed every search text with search.model (after changing it)"
    )
    app_options(reindex)
    reindex.add_argument("--batch", type=int, default=256, help="texts embedded at once")
    reindex.add_argument(
        "--drop-other-models", action="store_true", help="then delete other models' vectors"
    )
    reindex.set_defaults(func=cmd_reindex)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vidserve", description="Answer questions about videos.")
    sub = parser.add_subparsers(dest="command", required=True)
    profile_help = "gpu, cpu, ollama, or auto (gpu with nvidia-smi, ollama on macOS, else cpu)"
    profiles = ["auto", *(p.value for p in Profile)]
    set_help = "set an app setting, e.g. llm.max_model_len=4096 (repeatable; values as YAML)"

    def app_options(command: argparse.ArgumentParser) -> None:
        """What selects the app's configuration: profile, base file, --set overrides."""
        command.add_argument("--profile", default="auto", choices=profiles, help=profile_help)
        command.add_argument("--config", type=Path, default=env.config_file() or BASE_CONFIG)
        command.add_argument("--set", action="append", metavar="KEY=VALUE", help=set_help)

    run = sub.add_parser("run", help="start a local Ray and the app in the foreground")
    app_options(run)
    run.add_argument("--port", type=int, default=None, help="HTTP port (VIDSERVE_PORT, 8000)")
    run.set_defaults(func=cmd_run)

    config = sub.add_parser(
        "config", help="each setting of the app, its value and where it came from"
    )
    app_options(config)
    config.add_argument(
        "--yaml", action="store_true", help="print the merged Serve config (for `serve deploy`)"
    )
    config.set_defaults(func=cmd_config)

    models = sub.add_parser("models", help="the model catalog, marking what fits the GPUs found")
    models.add_argument("--gpu-memory-gb", type=float, help="judge GPUs of this size (GiB)")
    models.add_argument("--gpus", type=int, default=1, help="how many (with --gpu-memory-gb)")
    models.set_defaults(func=cmd_models)

    doctor = sub.add_parser(
        "doctor", help="check model, GPUs, Ray, Ollama and the config; exit 1 on a problem"
    )
    app_options(doctor)
    doctor.add_argument(
        "--ray-address",
        help="a Ray to check (dashboard http://HOST:8265 or GCS HOST:6379; default RAY_ADDRESS)",
    )
    doctor.set_defaults(func=cmd_doctor)

    fetch = sub.add_parser(
        "download", help="download a model (HF id or catalog Ollama tag) with progress"
    )
    fetch.add_argument("model", help="e.g. Qwen/Qwen2.5-VL-7B-Instruct or qwen2.5vl:7b")
    fetch.add_argument("--revision", help="branch, tag or commit (default main)")
    fetch.add_argument("--local-dir", type=Path, help="a directory instead of the HF cache")
    fetch.set_defaults(func=cmd_download)

    ask = sub.add_parser("analyze", help="ask a running vidserve about a video file or URL")
    ask.add_argument("source", help="a video or image file, or an http(s) URL")
    ask.add_argument("--prompt", required=True)
    ask.add_argument("--server", default=env.client_url(), help="VIDSERVE_URL")
    ask.add_argument("--api-key", default=env.client_api_key(), help="VIDSERVE_API_KEY")
    ask.add_argument("--model", help="default: the first model the service lists")
    ask.add_argument("--num-frames", type=int)
    ask.add_argument("--max-tokens", type=int)
    ask.add_argument("--json", action="store_true", help="print the whole response as JSON")
    ask.set_defaults(func=cmd_analyze)

    _add_summarize(sub)
    _add_reindex(sub, app_options)

    tiny = sub.add_parser("tiny-model", help="build the tiny random Qwen2.5-VL test model")
    tiny.add_argument("path", type=Path)
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(func=cmd_tiny_model)

    kuberay = sub.add_parser(
        "kuberay",
        help="write k8s/'s generated files (serveConfigV2 from serve_config.yaml, alert rules, "
        "dashboard); exit 1 with --check when one is stale",
    )
    kuberay.add_argument("--check", action="store_true", help="only check, write nothing")
    kuberay.set_defaults(func=cmd_kuberay)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ValueError as exc:
        print(f"vidserve: configuration error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    raise SystemExit(main())
