"""A real ingress (its own process) under chat bodies offered at five times its byte budget stays
within the bound docs/limits.md states (its peak resident memory, read from /proc)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from deploy.config.settings import AppArgs
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[3]
MiB = 1024 * 1024


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_an_ingress_under_five_times_its_budget_stays_within_its_bound() -> None:
    budget = 72 * MiB  # the least that holds one largest chat body (3 x 22.3 MiB)
    raw = {
        "backends": {"primary": "ollama", "fallback": "none"},
        "extraction": {"max_upload_bytes": 16 * MiB},
        # All 12 clients come from one address: here the replica's budget is what is measured,
        # so one client may hold all of it (the per-client share: api/test_guard_share.py).
        "http": {"max_inflight_bytes": budget, "max_inflight_bytes_per_client": budget},
    }
    args = AppArgs.model_validate(raw)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.support.memory_server", str(port), json.dumps(raw)], cwd=ROOT
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        video = base64.b64encode(b"\0\0\0\x18ftypisom" + bytes(8 * MiB)).decode()
        body = json.dumps(
            {
                "model": args.ollama_model,
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "video_url",
                                "video_url": {"url": f"data:video/mp4;base64,{video}"},
                            },
                            {"type": "text", "text": "what?"},
                        ],
                    }
                ],
            }
        ).encode()
        # Settle: one request through, then the baseline.
        httpx.post(
            f"{url}/v1/chat/completions",
            content=body,
            headers={"content-type": "application/json"},
            timeout=60,
        )
        baseline = _rss(server.pid)

        def post(_: int) -> int:
            return httpx.post(
                f"{url}/v1/chat/completions",
                content=body,
                headers={"content-type": "application/json"},
                timeout=60,
            ).status_code

        # 12 clients at once, 3 rounds: each body counts 3 x 10.7 MB: 5x the budget at a time.
        with ThreadPoolExecutor(12) as pool:
            statuses = list(pool.map(post, range(36)))
        peak = _peak_rss(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=10)
    growth = peak - baseline
    print(f"peak grew {growth / MiB:.1f} MiB; budget {budget / MiB:.0f} MiB")
    assert statuses.count(503) > 0  # the budget refused some
    assert statuses.count(422) > 0  # and let others through
    assert set(statuses) <= {422, 503}
    # The bound (budget) plus what one request briefly holds beyond it while the next is
    # admitted. Measured over 21 runs (before and after issue 26's changes): 53-61 MiB in most,
    # 93-97 MiB in about one in six (gc.collect() per request does not change it: not cycles,
    # a moment of overlap). Without the budget all 12 bodies are held: 355 MiB measured.
    assert growth < budget + 32 * MiB, (
        f"peak grew {growth / MiB:.0f} MiB over a {budget / MiB:.0f} MiB budget"
    )
