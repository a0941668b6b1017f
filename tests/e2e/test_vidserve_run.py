"""`vidserve run` (what `make run` starts) as a user runs it: start, ask with curl, Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import httpx
import pytest

from deploy.dev.tiny_model import QWEN3_VL, ensure_tiny_model
from tests.e2e.process import curl_analyze, vidserve_run
from tests.support.engine_prompt import seen_by_engine
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


def test_qwen3_vl_by_env_var_sees_the_frames_at_the_extractors_times(tmp_path: Path) -> None:
    """Qwen3-VL through the whole app, chosen by configuration alone (VLLM_MODEL_PATH): the
    prompt Ray Serve LLM's engine renders for an upload has as many tokens as the one vLLM's
    engine renders for the extractor's frames of that video at their true times, with the
    timestamps Qwen3-VL writes before each temporal patch (tests/support/engine_prompt.py).
    The window is past 20 s, and Qwen's tokenizer splits numbers into digits: frames that
    reached the engine without their times (counted from 0) would write `<0.5 seconds>`, not
    `<21.5 seconds>`, three tokens fewer."""
    cache = Path(os.environ.get("VIDSERVE_TEST_CACHE", Path.home() / ".cache" / "vidserve"))
    model = ensure_tiny_model(cache / "tiny-qwen3-vl-test", family=QWEN3_VL)
    video = write_h264(tmp_path / "thirty-seconds.mp4", 900, 30.0, (320, 240), gop=30)
    port = free_port()
    question = "When does it change?"
    with vidserve_run("cpu", port, VLLM_MODEL_PATH=str(model), VIDSERVE_FALLBACK="none") as run:
        run.wait_for("vidserve is ready", START_TIMEOUT_S)
        with video.open("rb") as upload:
            response = httpx.post(
                f"http://127.0.0.1:{port}/v1/video/analyze",
                files={"file": ("clip.mp4", upload, "video/mp4")},
                data={"prompt": question, "num_frames": "6", "start_s": "20", "end_s": "28",
                      "max_tokens": "2"},
                timeout=120,
            )  # fmt: skip
        assert run.stop_with_ctrl_c() == [], "Ray processes left behind"
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["backend"] == "vllm"
    times = body["frames"]["timestamps"]
    assert len(times) == 6
    assert all(20.0 <= t <= 28.0 for t in times), times  # the window's ends included
    seen = seen_by_engine(
        model, video, "--frames", "6", "--start-s", "20", "--end-s", "28", "--profile", "cpu",
        "--question", question,
    )  # fmt: skip
    assert seen["timestamps_s"] == pytest.approx(times, abs=1e-6)
    stamps = re.findall(r"<([0-9.]+) seconds>", seen["prompt"])
    assert len(stamps) == 3  # one per temporal patch of two frames
    assert [float(s) for s in stamps] == pytest.approx(
        [round((a + b) / 2, 1) for a, b in zip(times[::2], times[1::2], strict=True)], abs=0.051
    )
    assert body["usage"]["prompt_tokens"] == seen["prompt_tokens"]
