"""Fault tests on the real app: the vLLM replica is killed mid-request, Ollama goes down too,
and traffic returns to vLLM once its replica is back. Real Serve, real vLLM engine on the tiny
model, the real `ollama` client against the stand-in server.
"""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import ray

from deploy.config.settings import AppArgs
from tests.integration.conftest import VLLM_TIMEOUT_S
from tests.support.ollama_stub import OllamaStub
from tests.support.videos import write_h264

ANALYZE = "/v1/video/analyze"
IN_FLIGHT = 4
RECOVERY_TIMEOUT_S = 400.0
ASSIGN_TIMEOUT_S = AppArgs().backends.assign_timeout_s


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("videos") / "clip.mp4"
    return write_h264(path, 20, 10.0, (160, 120)).read_bytes()


# The tiny random model often ends early; a long minimum length keeps a request generating (and
# in flight) for many seconds, so that the kill lands mid-request.
LONG_ANSWER = {
    "type": "object",
    "properties": {"text": {"type": "string", "minLength": 1500}},
    "required": ["text"],
}


def _ask(serve_url: str, video: bytes, *, long: bool = False) -> tuple[httpx.Response, float]:
    data = {"prompt": "What happens?", "num_frames": "2", "max_tokens": "16"}
    if long:
        data.update(max_tokens="2000", response_format=json.dumps(LONG_ANSWER))
    started = time.monotonic()
    response = httpx.post(
        f"{serve_url}{ANALYZE}",
        files={"file": ("c.mp4", video, "video/mp4")},
        data=data,
        timeout=VLLM_TIMEOUT_S * 3,
    )
    return response, time.monotonic() - started


def _vllm_replicas() -> list[str]:
    return [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith("SERVE_REPLICA::vidserve#VLLM#")
    ]


def _kill(name: str) -> None:
    ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)


def _pid(name: str) -> int:
    actor = ray.get_actor(name, namespace="serve")
    pid: int = ray.get(actor.__ray_call__.remote(lambda _: os.getpid()), timeout=60)
    return pid


def _wait_for_vllm(serve_url: str, video: bytes) -> list[str]:
    """Until vLLM answers again (its replica replaced, the probe closed the circuit)."""
    deadline = time.monotonic() + RECOVERY_TIMEOUT_S
    backends: list[str] = []
    while time.monotonic() < deadline:
        response, _ = _ask(serve_url, video)
        backends.append(_backend_of(response))
        if backends[-1] == "vllm":
            break
        time.sleep(2.0)
    return backends


def test_after_a_sigkill_of_the_vllm_replica_no_request_waits_for_it(
    serve_url: str, stub: OllamaStub, video: bytes
) -> None:
    """Issue 26: the replica's process killed (SIGKILL, as the OOM killer does) while idle.
    Before, the requests sent after it waited ~40 s for Serve to start a new replica and
    none went to Ollama; each is now answered within backends.assign_timeout_s (2 s) plus
    its own work, by Ollama, until vLLM is back."""
    first, _ = _ask(serve_url, video)
    assert first.json()["backend"] == "vllm", first.text
    (replica,) = _vllm_replicas()
    os.kill(_pid(replica), signal.SIGKILL)
    results = [_ask(serve_url, video) for _ in range(6)]
    for response, elapsed in results:
        assert response.status_code == 200, response.text
        assert elapsed < ASSIGN_TIMEOUT_S + 6, [round(e, 1) for _, e in results]
    served_by = [response.json()["backend"] for response, _ in results]
    assert served_by.count("ollama") >= 5, served_by
    reasons = {r.json()["fallback"]["reason"] for r, _ in results if r.json()["fallback"]}
    assert reasons <= {"replica_died", "no_replica", "circuit_open"}, reasons
    assert "no_replica" in reasons or "replica_died" in reasons
    backends = _wait_for_vllm(serve_url, video)
    assert backends[-1] == "vllm", backends


def _backend_of(response: httpx.Response) -> str:
    if response.status_code == 200:
        backend: str = response.json()["backend"]
        return backend
    assert response.status_code == 503, response.text
    return "503"


def test_killing_the_vllm_replica_loses_no_request_and_traffic_returns(
    serve_url: str, stub: OllamaStub, video: bytes
) -> None:
    first, _ = _ask(serve_url, video)
    assert first.json()["backend"] == "vllm", first.text
    (replica,) = _vllm_replicas()

    # Requests in flight when the replica dies: each is answered (vLLM or Ollama) or a clear 503.
    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        futures = [pool.submit(_ask, serve_url, video, long=True) for _ in range(IN_FLIGHT)]
        time.sleep(3.0)  # extraction done, generation of 2000 tokens under way
        _kill(replica)
        results = [f.result(timeout=VLLM_TIMEOUT_S * 3) for f in futures]
    outcomes = [_backend_of(response) for response, _ in results]
    assert len(outcomes) == IN_FLIGHT
    assert set(outcomes) <= {"vllm", "ollama", "503"}
    assert "ollama" in outcomes, outcomes  # the ones cut off were handed to Ollama
    for response, elapsed in results:
        assert elapsed < VLLM_TIMEOUT_S + 30, (elapsed, response.text)
        if response.json().get("backend") == "ollama":
            fallback: dict[str, Any] = response.json()["fallback"]
            assert fallback["from_backend"] == "vllm"
            assert fallback["reason"] in {"replica_died", "circuit_open", "unavailable"}

    # While vLLM is down the circuit is open: Ollama answers without waiting on vLLM.
    response, elapsed = _ask(serve_url, video)
    assert response.status_code == 200, response.text
    assert response.json()["backend"] == "ollama"
    assert response.json()["fallback"] == {"from_backend": "vllm", "reason": "circuit_open"}

    # Ollama down as well: a 503 that names the state of both backends.
    stub.stop()
    response, elapsed = _ask(serve_url, video)
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "no_backend_available"
    assert set(error["backends"]) == {"vllm", "ollama"}
    assert error["backends"]["vllm"].startswith("circuit open")
    assert "not reachable" in error["backends"]["ollama"]
    stub.restart()

    # The replica is replaced; the probe closes the circuit; vLLM answers again.
    backends = _wait_for_vllm(serve_url, video)
    assert backends[-1] == "vllm", backends
    assert _vllm_replicas() != [replica]
    ready = httpx.get(f"{serve_url}/readyz", timeout=10).json()
    assert ready["backends"]["vllm"]["circuit"] == "closed"
