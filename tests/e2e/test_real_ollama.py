"""Against a real Ollama server, when one is reachable at OLLAMA_HOST (skipped otherwise).

ollama serve &  ollama pull qwen2.5vl:3b
OLLAMA_HOST=http://127.0.0.1:11434 OLLAMA_MODEL=qwen2.5vl:3b make test PYTEST_ARGS=tests/e2e
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

from tests.e2e.process import curl_analyze, vidserve_run
from tests.e2e.test_vidserve_run import START_TIMEOUT_S
from tests.support.ports import free_port
from tests.support.videos import write_h264


def _real_ollama() -> tuple[str, str] | None:
    host = os.environ.get("OLLAMA_HOST")
    if not host:
        return None
    url = host if "://" in host else f"http://{host}"
    try:
        tags = httpx.get(f"{url}/api/tags", timeout=3).json()
    except (httpx.HTTPError, ValueError):
        return None
    model = os.environ.get("OLLAMA_MODEL", "qwen2.5vl:7b")
    if model not in {m.get("model") for m in tags.get("models", [])}:
        return None
    return url, model


REAL = _real_ollama()


@pytest.mark.skipif(
    REAL is None,
    reason="no Ollama server with the model at OLLAMA_HOST (set OLLAMA_HOST and OLLAMA_MODEL, "
    "run `ollama serve` and `ollama pull <model>`)",
)
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_a_real_ollama_answers_a_question_about_a_video(tmp_path: Path) -> None:
    assert REAL is not None
    url, model = REAL
    port = free_port()
    video = write_h264(tmp_path / "clip.mp4", 30, 10.0, (320, 240))
    with vidserve_run("ollama", port, OLLAMA_HOST=url, OLLAMA_MODEL=model) as run:
        run.wait_for("vidserve is ready", START_TIMEOUT_S)
        body = curl_analyze(video, port)
        assert body["backend"] == "ollama"
        assert body["model"] == model
        assert isinstance(body["answer"], str)
        assert body["answer"].strip()
        assert run.stop_with_ctrl_c() == []
