"""bench/gpu.sh, the GPU benchmark kept ready for a lent GPU machine: here (no GPU) it says what
the machine lacks and exits 2, and its --dry-run runs the same steps on CPU with the tiny model,
printing the table a GPU run prints."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu.sh"


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a GPU machine: it would run")
def test_without_a_gpu_it_says_so_and_exits_2() -> None:
    run = subprocess.run(
        ["bash", str(SCRIPT)], capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 2, run.stdout + run.stderr
    assert "no nvidia-smi" in run.stderr


def test_the_dry_run_prints_the_table_on_cpu() -> None:
    run = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
        check=False,
    )
    assert run.returncode == 0, (run.stdout[-3000:], run.stderr[-3000:])
    row = re.search(
        r"^\s+1 \|\s+([\d.]+) \|\s+([\d.]+) \|\s+([\d.]+) \|\s+([\d.]+) \|\s+(\d+)% \|\s+(\d+)%$",
        run.stdout,
        re.M,
    )
    assert row is not None, run.stdout[-3000:]
    per_minute, ttft, _, e2e, decode, engine = (float(g) for g in row.groups())
    assert per_minute > 0
    assert 0 < ttft <= e2e
    assert 0 <= decode <= 100
    assert 0 < engine <= 100
