"""Chaos: under a bounded load of mixed requests (uploads, images, text, streamed video chat),
a FrameExtractor replica, the Ingress replica and the vLLM replica are killed in turn (as crashes)
and the Ollama server is stopped for a while. Every request is answered, a 200 or a 503/504 in
the JSON shape, within its bound; none hangs; the app recovers by itself (vLLM ready again, and
one request of each kind answered 200). bench/chaos.py runs it, as a subprocess with its own
local Ray (the real app, the real engine on the tiny model, real HTTP clients); it exits non-zero
when any of that fails."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _report(run: subprocess.CompletedProcess[str]) -> str:
    """The bench's own table and verdict first: Ray's replica logs on stderr would bury them."""
    return f"stdout (tail):\n{run.stdout[-4000:]}\nstderr (tail):\n{run.stderr[-1500:]}"


def test_every_request_is_answered_while_replicas_die_and_the_app_recovers() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "chaos.py"), "--seconds", "60"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        cwd=ROOT,
    )
    assert run.returncode == 0, _report(run)
    assert "verdict: ok" in run.stdout
    for fault in ("FrameExtractor", "Ingress", "VLLM"):
        assert re.search(rf"killed SERVE_REPLICA::vidserve#{fault}#", run.stdout), fault
    assert "stopped the Ollama server" in run.stdout
    row = re.search(r"chaos\s+\|\s+(\d+)\s+\|\s+(\d+)\s+\|", run.stdout)
    assert row is not None, run.stdout[-2000:]
    sent, ok = int(row.group(1)), int(row.group(2))
    assert ok > sent / 2, run.stdout[-2000:]  # mostly served throughout
    assert (
        "answers outside the rule (a hang, another status, an error not in JSON): 0" in run.stdout
    )


def test_fault_scenarios_lose_no_request() -> None:
    """bench/chaos.py --faults (bench/faults.py): the vLLM replica's process SIGKILLed under
    load, the ingress killed mid-job, PostgreSQL stopped mid-job, the jobs disk filled past its
    floor, one key holding its share: each row's lost count is 0, and each fault did what it
    should (fallback within its bound, 503 store_unavailable, 507, 429)."""
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "chaos.py"), "--seconds", "0", "--faults"],
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
        cwd=ROOT,
    )
    out = run.stdout
    assert run.returncode == 0, _report(run)
    assert "verdict: ok" in out
    rows = {
        m.group(1).strip(): [int(m.group(i)) for i in (2, 3, 4, 5)]
        for m in re.finditer(r"^(.{26}) \|\s+(\d+) \|\s+(\d+) \|\s+(\d+) \|\s+(\d+) \|", out, re.M)
    }
    assert set(rows) == {
        "primary killed (SIGKILL)",
        "ingress killed mid-job",
        "database stopped mid-job",
        "disk filling",
        "a client holds its share",
    }, out[-3000:]
    for name, (sent, answered, _refused, lost) in rows.items():
        assert lost == 0, (name, out[-3000:])
        assert answered > 0, (name, out[-3000:])
        assert sent > 0
    assert rows["disk filling"][2] >= 3  # the 507s
    assert rows["a client holds its share"][2] >= 5  # the 429s
    assert rows["database stopped mid-job"][2] >= 1  # the 503s while it was down
    assert re.search(r"job succeeded: (\d+)/\1 chunks", out), out[-3000:]
