"""The `vidserve` command.

vidserve run [--profile auto|gpu|cpu|ollama] [--config serve_config.yaml] [--port 8000]
vidserve config [--profile ...]      print the merged Serve config (for `serve deploy`)
vidserve tiny-model PATH             build the tiny random Qwen2.5-VL test model
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

from deploy import env
from deploy.serve_config import BASE_CONFIG, Profile, app_args, load_config

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


def choose_model(config: dict[str, Any], profile: Profile) -> str | None:
    """Point the app at the tiny model when none is configured and no real one can run.

    Returns the warning to show, or None when the configured model is used."""
    from deploy.config import AppArgs, Backend, ModelSourceKind, classify_model_source
    from deploy.tiny_model import ensure_tiny_model

    if env.model_path() is not None:
        return None
    args = app_args(config)
    if Backend.VLLM not in AppArgs.from_args(args).backends.order:
        return None
    llm = args.setdefault("llm", {})
    model = str(llm.get("model", env.DEFAULT_MODEL))
    is_hub_model = classify_model_source(model) is ModelSourceKind.HF_ID
    if profile is Profile.GPU and not (
        is_hub_model and not _cached(model) and not _hub_reachable()
    ):
        return None
    llm["model"] = str(ensure_tiny_model(env.cache_dir() / "tiny-qwen2.5-vl"))
    return TINY_MODEL_WARNING


def _resolve_profile(name: str) -> Profile:
    return detect_profile() if name == "auto" else Profile(name)


def cmd_config(args: argparse.Namespace) -> int:
    config = load_config(args.config, _resolve_profile(args.profile))
    yaml.safe_dump(config, sys.stdout, sort_keys=False)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from deploy import runner

    profile = _resolve_profile(args.profile)
    port = args.port or env.http_port()
    config = load_config(args.config, profile, ({"http_options": {"port": port}},))
    print(f"vidserve: profile {profile.value} ({args.config.name} + overlay)", flush=True)
    print(f"vidserve: {_describe_backends(app_args(config))}", flush=True)
    warning = choose_model(config, profile)
    if warning:
        print(f"\n*** {warning}\n", flush=True)

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
    finally:
        runner.shutdown()
    print("vidserve: stopped", flush=True)
    return 0


def _describe_backends(args: dict[str, Any]) -> str:
    from deploy.config import AppArgs, Backend

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
    from deploy.tiny_model import build_tiny_model

    print(build_tiny_model(args.path, seed=args.seed))
    return 0


def cmd_kuberay(args: argparse.Namespace) -> int:
    from deploy import kuberay

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vidserve", description="Answer questions about videos.")
    sub = parser.add_subparsers(dest="command", required=True)
    profile_help = "gpu, cpu, ollama, or auto (gpu with nvidia-smi, ollama on macOS, else cpu)"
    profiles = ["auto", *(p.value for p in Profile)]

    run = sub.add_parser("run", help="start a local Ray and the app in the foreground")
    run.add_argument("--profile", default="auto", choices=profiles, help=profile_help)
    run.add_argument("--config", type=Path, default=env.config_file() or BASE_CONFIG)
    run.add_argument("--port", type=int, default=None, help="HTTP port (VIDSERVE_PORT, 8000)")
    run.set_defaults(func=cmd_run)

    config = sub.add_parser("config", help="print the merged Serve config for a profile")
    config.add_argument("--profile", default="auto", choices=profiles, help=profile_help)
    config.add_argument("--config", type=Path, default=env.config_file() or BASE_CONFIG)
    config.set_defaults(func=cmd_config)

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
