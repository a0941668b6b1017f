"""The real Serve app (CPU profile, the real vLLM engine on the tiny model), once per session,
with the Ollama stand-in (tests/ollama_stub.py) as its fallback.

Two applications run side by side in the one Serve instance:
  * `vidserve` at `/`: primary vLLM, fallback Ollama (the stand-in);
  * `vidserve-ollama` at `/ollama-only`: primary Ollama, no fallback, no vLLM deployment.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy import runner
from deploy.serve_config import Profile, load_config, merge, validate
from deploy.tiny_model import ensure_tiny_model
from tests.ollama_stub import VISION, OllamaStub
from tests.ports import free_port

# Small enough that the oversize-upload test sends little, large enough for every test video.
TEST_MAX_UPLOAD_BYTES = 4 * 1024 * 1024
START_TIMEOUT_S = 600.0
OLLAMA_ONLY_PREFIX = "/ollama-only"
OLLAMA_ONLY_MODEL = "qwen2.5vl:3b"
OLLAMA_ONLY_TIMEOUT_S = 3.0
# The fault tests wait for these: a short circuit-breaker cycle and bounded vLLM waits.
BREAKER = {"failure_threshold": 2, "open_s": 3, "probe_timeout_s": 3}
VLLM_TIMEOUT_S = 90.0


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = Path(os.environ.get("VIDSERVE_TEST_CACHE", Path.home() / ".cache" / "vidserve"))
    return ensure_tiny_model(cache / "tiny-qwen2.5-vl-test")


@pytest.fixture(scope="session")
def ollama_stub() -> Iterator[OllamaStub]:
    stub = OllamaStub({"qwen2.5vl:7b": VISION, OLLAMA_ONLY_MODEL: VISION})
    stub.start()
    yield stub
    stub.stop()


def _test_config(tiny_model_dir: Path, port: int, ollama_url: str) -> dict[str, Any]:
    overlay = {
        "http_options": {"host": "127.0.0.1", "port": port},
        "applications": [
            {
                "name": "vidserve",
                "args": {
                    "backends": {"circuit_breaker": BREAKER},
                    "llm": {
                        "model": str(tiny_model_dir),
                        "model_id": "tiny-qwen2.5-vl",
                        "request_timeout_s": VLLM_TIMEOUT_S,
                    },
                    "ollama": {"host": ollama_url},
                    "extraction": {"max_upload_bytes": TEST_MAX_UPLOAD_BYTES},
                },
            }
        ],
    }
    config = load_config(profile=Profile.CPU, extra_overlays=(overlay,))
    ollama_only = copy.deepcopy(config["applications"][0])
    ollama_only.update(name="vidserve-ollama", route_prefix=OLLAMA_ONLY_PREFIX)
    ollama_only["args"] = merge(
        ollama_only["args"],
        {
            "backends": {"primary": "ollama", "fallback": "none"},
            "ollama": {"model": OLLAMA_ONLY_MODEL, "request_timeout_s": OLLAMA_ONLY_TIMEOUT_S},
        },
    )
    ollama_only["deployments"] = [d for d in ollama_only["deployments"] if d["name"] != "VLLM"]
    config["applications"].append(ollama_only)
    validate(config)
    return config


@pytest.fixture(scope="session")
def serve_url(tiny_model_dir: Path, ollama_stub: OllamaStub) -> Iterator[str]:
    for name in ("VLLM_MODEL_PATH", "VIDSERVE_BACKEND", "VIDSERVE_FALLBACK", "OLLAMA_HOST"):
        os.environ.pop(name, None)
    port = free_port()
    config = _test_config(tiny_model_dir, port, ollama_stub.url)
    runner.start_local_ray()
    try:
        runner.deploy(config)
        runner.wait_until_running(START_TIMEOUT_S, progress=print)
        runner.wait_until_running(START_TIMEOUT_S, progress=print, app="vidserve-ollama")
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url)
        yield url
    finally:
        runner.shutdown()


def _wait_ready(url: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url}/readyz never returned 200")


@pytest.fixture(scope="session")
def client(serve_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=serve_url, timeout=120) as http:
        yield http


@pytest.fixture
def stub(ollama_stub: OllamaStub) -> Iterator[OllamaStub]:
    """The stand-in, reset before and after a test that changes its behaviour."""
    ollama_stub.reset()
    yield ollama_stub
    if not ollama_stub.server.is_running():
        ollama_stub.restart()
    ollama_stub.reset()
