"""`vidserve run` as a subprocess, the way a user starts it: its output read line by line."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from tests.support.ports import free_port

STOP_TIMEOUT_S = 90.0


class VidserveProcess:
    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.seen: list[str] = []
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in iter(self.process.stdout.readline, ""):
            self._lines.put(line)

    def wait_for(self, text: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=1.0)
            except queue.Empty:
                if self.process.poll() is not None and self._lines.empty():
                    break
                continue
            self.seen.append(line)
            if text in line:
                return
        tail = "".join(self.seen[-40:])
        raise TimeoutError(f"{text!r} not printed within {timeout_s:.0f}s; last output:\n{tail}")

    def _drain(self) -> None:
        while True:
            try:
                self.seen.append(self._lines.get_nowait())
            except queue.Empty:
                return

    @property
    def output(self) -> str:
        return "".join(self.seen)

    def stop_with_ctrl_c(self) -> list[int]:
        """SIGINT, wait for a clean exit; returns the pids of Ray processes left behind."""
        children = psutil.Process(self.process.pid).children(recursive=True)
        if not children:
            raise AssertionError("vidserve run started no Ray processes")
        self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._drain()
            alive = [f"{c.pid} {' '.join(c.cmdline()[:3])}" for c in children if c.is_running()]
            raise AssertionError(
                f"vidserve run did not stop within {STOP_TIMEOUT_S:.0f} s of Ctrl-C; still "
                f"running: {alive}; its last output:\n{self.output[-6000:]}"
            ) from None
        if code != 0:
            raise AssertionError(f"vidserve run exited with {code}:\n{self.output[-3000:]}")
        self.wait_for("vidserve: stopped", 10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(c.is_running() for c in children):
            time.sleep(0.5)
        return [c.pid for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


def _sigint_not_ignored() -> None:
    """As from a terminal, Ctrl-C must reach vidserve run. A test run started in the background
    (`cmd &` from a script, as CI may) has SIGINT ignored, which a child inherits (its Ctrl-C
    tests then hang); a handled signal is reset to its default in the child."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@contextmanager
def vidserve_run(profile: str, port: int, *args: str, **env: str) -> Iterator[VidserveProcess]:
    cache = Path(os.environ.get("VIDSERVE_TEST_CACHE", Path.home() / ".cache" / "vidserve"))
    environment = {
        **os.environ,
        "VIDSERVE_CACHE_DIR": str(cache),
        "PYTHONUNBUFFERED": "1",
        "VIDSERVE_METRICS_PORT": str(free_port()),
    }
    for name in ("VLLM_MODEL_PATH", "VIDSERVE_BACKEND", "VIDSERVE_FALLBACK"):
        environment.pop(name, None)
    environment.update(env)
    command = [
        sys.executable, "-m", "deploy.cli", "run", "--profile", profile, "--port", str(port), *args
    ]  # fmt: skip
    _sigint_not_ignored()
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment,
        start_new_session=True,
    )
    try:
        yield VidserveProcess(process)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def curl_analyze(video: Path, port: int) -> dict[str, object]:
    """Ask the running app about `video` with curl, as the README shows; the JSON answer."""
    answer = subprocess.run(
        ["curl", "-sS", "-F", f"file=@{video}", "-F", "prompt=What happens?",
         f"http://127.0.0.1:{port}/v1/video/analyze"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    body: dict[str, object] = json.loads(answer.stdout)
    return body
