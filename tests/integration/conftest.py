"""The real Serve app (CPU profile, the real vLLM engine on the tiny model), once per session."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from deploy import runner
from deploy.serve_config import Profile, load_config
from deploy.tiny_model import ensure_tiny_model
from tests.ports import free_port

# Small enough that the oversize-upload test sends little, large enough for every test video.
TEST_MAX_UPLOAD_BYTES = 4 * 1024 * 1024
START_TIMEOUT_S = 600.0


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = Path(os.environ.get("VIDSERVE_TEST_CACHE", Path.home() / ".cache" / "vidserve"))
    return ensure_tiny_model(cache / "tiny-qwen2.5-vl-test")


@pytest.fixture(scope="session")
def serve_url(tiny_model_dir: Path) -> Iterator[str]:
    os.environ.pop("VLLM_MODEL_PATH", None)
    port = free_port()
    overlay = {
        "http_options": {"host": "127.0.0.1", "port": port},
        "applications": [
            {
                "name": "vidserve",
                "args": {
                    "llm": {"model": str(tiny_model_dir), "model_id": "tiny-qwen2.5-vl"},
                    "extraction": {"max_upload_bytes": TEST_MAX_UPLOAD_BYTES},
                },
            }
        ],
    }
    config = load_config(profile=Profile.CPU, extra_overlays=(overlay,))
    runner.start_local_ray()
    try:
        runner.deploy(config)
        runner.wait_until_running(START_TIMEOUT_S, progress=print)
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
