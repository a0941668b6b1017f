"""`vidserve run` (what `make run` starts) as a user runs it: start, ask with curl, Ctrl-C."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.ports import free_port
from tests.videos import write_h264

START_TIMEOUT_S = 600.0
STOP_TIMEOUT_S = 90.0


def _reader(stream: object, lines: queue.Queue[str]) -> None:
    for line in iter(stream.readline, ""):  # type: ignore[attr-defined]
        lines.put(line)


def _wait_for(lines: queue.Queue[str], text: str, seen: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1.0)
        except queue.Empty:
            continue
        seen.append(line)
        if text in line:
            return
    tail = "".join(seen[-40:])
    raise TimeoutError(f"{text!r} not printed within {timeout_s:.0f}s; last output:\n{tail}")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_run_answers_curl_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    video = write_h264(tmp_path / "clip.mp4", 30, 10.0, (320, 240))
    cache = Path(os.environ.get("VIDSERVE_TEST_CACHE", Path.home() / ".cache" / "vidserve"))
    environment = {**os.environ, "VIDSERVE_CACHE_DIR": str(cache), "PYTHONUNBUFFERED": "1"}
    environment.pop("VLLM_MODEL_PATH", None)
    command = [sys.executable, "-m", "deploy.cli", "run", "--profile", "cpu", "--port", str(port)]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment,
        start_new_session=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_reader, args=(process.stdout, lines), daemon=True).start()
    seen: list[str] = []
    try:
        _wait_for(lines, "vidserve is ready", seen, START_TIMEOUT_S)
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
        assert ready.status_code == 200
        assert ready.json()["status"] == "ready"
        _wait_for(lines, f"http://127.0.0.1:{port}/v1/video/analyze", seen, 10)
        assert "answers are MEANINGLESS" in "".join(seen)
        children = psutil.Process(process.pid).children(recursive=True)
        assert children, "vidserve run started no Ray processes"

        answer = subprocess.run(
            ["curl", "-sS", "-F", f"file=@{video}", "-F", "prompt=What happens?",
             f"http://127.0.0.1:{port}/v1/video/analyze"],
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        body = json.loads(answer.stdout)
        assert body["backend"] == "vllm"
        assert body["frames"]["count"] == 8

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=STOP_TIMEOUT_S) == 0
        _wait_for(lines, "vidserve: stopped", seen, 10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(c.is_running() for c in children):
            time.sleep(0.5)
        left = [c.pid for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
        assert left == [], f"Ray processes left behind: {left}"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
