"""Autoscaling shown on a real Serve: bench/autoscale.py drives a bounded load of uploads, and the
FrameExtractor deployment must scale up to its max under it and back to its min after it. The
script runs as a subprocess with its own local Ray, short autoscaling push intervals set for that
run only; it exits non-zero when either never happens or a request failed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_extractor_scales_up_under_load_and_down_after_it() -> None:
    bounds = ["--max-replicas", "2", "--max-load-s", "120", "--max-idle-s", "120"]
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "autoscale.py"), *bounds],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=ROOT,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    up = re.search(r"load start -> 2 replicas\s+\|\s+([\d.]+)", run.stdout)
    down = re.search(r"load end -> 1 replica\s+\|\s+([\d.]+)", run.stdout)
    assert up is not None, run.stdout[-2000:]
    assert down is not None, run.stdout[-2000:]
    # The replica count went 1 -> 2 while loaded and 2 -> 1 while idle, as the script saw it.
    assert re.search(r"load\s+[\d.]+ s: 2 extractor replica", run.stdout), run.stdout[-2000:]
    assert re.search(r"idle\s+[\d.]+ s: 1 extractor replica", run.stdout), run.stdout[-2000:]
    errors = re.search(r"requests sent (\d+), answered (\d+), errors none", run.stdout)
    assert errors is not None, run.stdout[-2000:]
    assert errors.group(1) == errors.group(2)
