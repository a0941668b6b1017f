"""The NVIDIA GPUs of this machine, as `nvidia-smi` reports them (none without a driver)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

QUERY = ["--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"]
MIB = 1024**2


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    memory_bytes: int

    @property
    def memory_gib(self) -> float:
        return self.memory_bytes / 1024**3


def find_gpus(timeout_s: float = 10.0) -> list[Gpu]:
    """GPUs from `nvidia-smi --query-gpu=index,name,memory.total` (memory in MiB); an empty
    list when nvidia-smi is missing or fails (no driver, no device)."""
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return []
    try:
        out = subprocess.run(
            [binary, *QUERY], capture_output=True, text=True, timeout=timeout_s, check=True
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    gpus = []
    for line in out.splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) == 3 and parts[0].isdigit() and parts[2].isdigit():
            gpus.append(Gpu(int(parts[0]), parts[1], int(parts[2]) * MIB))
    return gpus
