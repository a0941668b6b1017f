"""A client that goes away mid-stream frees its slot and its engine request is aborted: the
real app, the real vLLM engine on the tiny model, read through Ray's metrics export."""

from __future__ import annotations

import re
import time

import httpx

MODEL = "tiny-qwen2.5-vl"
MAX_TOKENS = 3000  # the tiny model at temperature 0 runs to the limit (checked below)


def _series(metrics_port: int, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    pattern = re.compile(rf"{name}\{{[^}}]*application=\"vidserve\"")
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if pattern.match(line))


def _settled(metrics_port: int, timeout_s: float = 60.0) -> float:
    """Generated tokens once no request runs and the count has stopped moving (Ray exports
    metrics every few seconds)."""
    deadline = time.monotonic() + timeout_s
    last = -1.0
    while time.monotonic() < deadline:
        running = _series(metrics_port, "ray_vllm_num_requests_running")
        tokens = _series(metrics_port, "ray_vllm_generation_tokens_total")
        if running == 0 and tokens == last:
            return tokens
        last = tokens
        time.sleep(3)
    raise AssertionError("the engine kept running or its token count kept moving")


def _body(stream: bool) -> dict[str, object]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Count to a thousand."}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "stream": stream,
    }


def test_a_client_that_disconnects_mid_stream_aborts_the_engine_request(
    serve_url: str, metrics_port: int
) -> None:
    # Control: left alone, this request generates all MAX_TOKENS tokens (no early stop).
    full = httpx.post(f"{serve_url}/v1/chat/completions", json=_body(False), timeout=600)
    assert full.status_code == 200, full.text
    assert full.json()["usage"]["completion_tokens"] == MAX_TOKENS
    before = _settled(metrics_port)

    with httpx.stream(
        "POST", f"{serve_url}/v1/chat/completions", json=_body(True), timeout=120
    ) as response:
        assert response.status_code == 200
        seen = 0
        for line in response.iter_lines():
            if line.startswith("data: {"):
                seen += 1
            if seen >= 5:
                break  # leaving the block closes the connection mid-stream

    generated = _settled(metrics_port) - before
    assert generated < MAX_TOKENS / 2, f"{generated} tokens: the engine kept generating"
    # The slot is free: the app answers at once.
    quick = httpx.post(
        f"{serve_url}/v1/chat/completions",
        json=_body(False) | {"max_tokens": 2},
        timeout=60,
    )
    assert quick.status_code == 200
