"""`vidserve run` (what `make run` starts) as a user runs it: start, ask with curl, Ctrl-C."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import httpx
import pytest

from deploy.dev.tiny_model import ensure_tiny_model
from tests.e2e.process import curl_analyze, vidserve_run
from tests.support.ollama_stub import VISION, OllamaStub
from tests.support.ports import free_port
from tests.support.videos import write_h264

START_TIMEOUT_S = 600.0


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_run_answers_curl_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    video = write_h264(tmp_path / "clip.mp4", 30, 10.0, (320, 240))
    with vidserve_run("cpu", port) as run:
        run.wait_for("vidserve is ready", START_TIMEOUT_S)
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
        assert ready.status_code == 200
        assert ready.json()["status"] == "ready"
        run.wait_for(f"http://127.0.0.1:{port}/v1/video/analyze", 10)
        assert "answers are MEANINGLESS" in run.output

        body = curl_analyze(video, port)
        assert body["backend"] == "vllm"
        assert body["frames"]["count"] == 8  # type: ignore[index]

        assert run.stop_with_ctrl_c() == [], "Ray processes left behind"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_ollama_profile_runs_without_vllm(tmp_path: Path) -> None:
    """The laptop profile: vLLM cannot even be imported, and the app answers through Ollama."""
    blocked = tmp_path / "blocked" / "vllm"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('vLLM is not installed here')\n")
    stub = OllamaStub({"qwen2.5vl:7b": VISION})
    stub.start()
    port = free_port()
    video = write_h264(tmp_path / "clip.mp4", 30, 10.0, (320, 240))
    try:
        environment = {"PYTHONPATH": str(blocked.parent), "OLLAMA_HOST": stub.url}
        with vidserve_run("ollama", port, **environment) as run:
            run.wait_for("vidserve is ready", START_TIMEOUT_S)
            assert "MEANINGLESS" not in run.output  # no tiny vLLM model is built
            ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).json()
            assert ready["status"] == "ready"
            assert list(ready["backends"]) == ["ollama"]
            body = curl_analyze(video, port)
            assert body["backend"] == "ollama"
            assert body["model"] == "qwen2.5vl:7b"
            (chat,) = stub.chats
            assert len(chat["messages"][0]["images"]) == 8
            assert run.stop_with_ctrl_c() == [], "Ray processes left behind"
    finally:
        stub.stop()


def test_a_model_that_cannot_load_is_refused_before_anything_starts(tmp_path: Path) -> None:
    missing = "Qwen/No-Such-Model-For-Vidserve"
    with vidserve_run(
        "cpu", free_port(), VLLM_MODEL_PATH=missing, HF_HOME=str(tmp_path), HF_HUB_OFFLINE="1"
    ) as run:
        assert run.process.wait(timeout=120) == 1
        run.wait_for(f"fix: `vidserve download {missing}`", 5)
        assert "vidserve: the model cannot load" in run.output
        assert "neither in the local Hugging Face cache nor downloadable" in run.output


def test_an_engine_that_will_not_start_is_explained_and_run_exits_1(tmp_path: Path) -> None:
    """The replica's own start-up error (deploy/models/startup_errors.py) reaches the user: weights
    stored as AWQ, the config asking for GPTQ."""
    cache = Path(os.environ.get("VIDSERVE_TEST_CACHE", Path.home() / ".cache" / "vidserve"))
    model = tmp_path / "awq-model"
    shutil.copytree(ensure_tiny_model(cache / "tiny-qwen2.5-vl-test"), model)
    config = json.loads((model / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "awq", "bits": 4}
    (model / "config.json").write_text(json.dumps(config))
    with vidserve_run(
        "cpu", free_port(), "--set", "llm.engine_kwargs.quantization=gptq",
        VLLM_MODEL_PATH=str(model), VIDSERVE_FALLBACK="none",
    ) as run:  # fmt: skip
        assert run.process.wait(timeout=START_TIMEOUT_S) == 1
        run.wait_for("vidserve: the app did not start: VLLM: llm.engine_kwargs.quantization", 30)
        assert "('gptq') does not match how the weights" in run.seen[-1]
        run.wait_for("fix: remove llm.engine_kwargs.quantization", 5)
