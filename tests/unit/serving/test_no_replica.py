"""A request never waits on a primary with no replica ready (issue 26).

Before: with the vLLM replica killed, Serve's router held every new request until a replica was
back (~39 s on CPU, minutes for a 7B model on a GPU): none went to Ollama. Now a request the
primary's router has not handed to a replica within `backends.assign_timeout_s` is cancelled
there and goes to the fallback.

The handle is a stand-in with Serve's calling surface: `.remote()` returns a response whose
replica assignment is a future (`_fetch_future_result_async`, what Ray 2.60's
DeploymentResponse awaits before the replica's result), awaited for the result, cancellable.
Here the assignment never comes, as when the deployment has no running replica.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from deploy.config.settings import CircuitBreakerSettings
from deploy.core.messages import GenerationParams, InferenceRequest, InferenceResult
from deploy.serving.backends import BackendRouter, HandleBackend

BOUND_S = 0.3
TIMEOUT_S = 30.0  # the primary's own request timeout: far longer than the test waits


class _Response:
    def __init__(self, assigned: asyncio.Future[Any], answer: Any) -> None:
        self._assigned = assigned
        self._answer = answer
        self.cancelled = False

    async def _fetch_future_result_async(self) -> Any:
        return await self._assigned

    def __await__(self) -> Any:
        return self._result().__await__()

    async def _result(self) -> Any:
        await self._assigned
        return self._answer

    def cancel(self) -> None:
        self.cancelled = True
        self._assigned.cancel()


class ServeLikeHandle:
    """`replicas=False`: no replica to assign to (dead, starting): assignment never happens."""

    def __init__(self, name: str, replicas: bool) -> None:
        self._name = name
        self.replicas = replicas
        self.responses: list[_Response] = []

    def options(self, **_: object) -> ServeLikeHandle:
        return self

    def __getattr__(self, method: str) -> Any:
        outer = self

        class _Method:
            def remote(self, *args: object) -> _Response:
                assigned: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                if outer.replicas:
                    assigned.set_result("replica")
                answer = InferenceResult(f"from {outer._name}", "m", outer._name, 1, 1)
                response = _Response(assigned, answer)
                outer.responses.append(response)
                return response

        return _Method()


def _request() -> InferenceRequest:
    return InferenceRequest.ask("what?", None, GenerationParams(max_tokens=4))


def _router(vllm: ServeLikeHandle, ollama: ServeLikeHandle) -> BackendRouter:
    """As the ingress builds it: the bound on every backend but the last (nothing after it)."""
    backends = [
        HandleBackend("vllm", vllm, TIMEOUT_S, assign_timeout_s=BOUND_S),  # type: ignore[arg-type]
        HandleBackend("ollama", ollama, TIMEOUT_S),  # type: ignore[arg-type]
    ]
    return BackendRouter(backends, CircuitBreakerSettings(failure_threshold=3, open_s=60))


def test_with_no_primary_replica_the_fallback_answers_within_the_bound() -> None:
    vllm, ollama = ServeLikeHandle("vllm", replicas=False), ServeLikeHandle("ollama", True)

    async def ask() -> tuple[Any, float]:
        router = _router(vllm, ollama)
        started = time.monotonic()
        routed = await asyncio.wait_for(router.answer(_request()), timeout=10)
        return routed, time.monotonic() - started

    routed, elapsed = asyncio.run(ask())
    assert routed.result.backend == "ollama"
    assert routed.fallback is not None
    assert routed.fallback.reason == "no_replica"
    assert elapsed < BOUND_S + 1.0
    assert vllm.responses[0].cancelled  # the waiting request is taken back from vLLM's queue


def test_after_the_threshold_the_circuit_opens_and_no_request_waits_at_all() -> None:
    vllm, ollama = ServeLikeHandle("vllm", replicas=False), ServeLikeHandle("ollama", True)

    async def ask() -> list[float]:
        router = _router(vllm, ollama)
        took = []
        for _ in range(5):
            started = time.monotonic()
            await router.answer(_request())
            took.append(time.monotonic() - started)
        return took

    took = asyncio.run(ask())
    assert len(vllm.responses) == 3  # the breaker's threshold; then vLLM is skipped
    assert max(took[3:]) < 0.1


def test_the_last_backend_is_waited_for_as_before() -> None:
    """With nothing to fall back to, the request waits on its own timeout (not the bound)."""
    vllm, ollama = ServeLikeHandle("vllm", replicas=False), ServeLikeHandle("ollama", False)

    async def ask() -> None:
        await asyncio.wait_for(_router(vllm, ollama).answer(_request()), timeout=BOUND_S * 4)

    with pytest.raises(TimeoutError):
        asyncio.run(ask())


def test_a_primary_with_a_replica_answers_as_before() -> None:
    vllm, ollama = ServeLikeHandle("vllm", replicas=True), ServeLikeHandle("ollama", True)

    async def ask() -> Any:
        return await _router(vllm, ollama).answer(_request())

    routed = asyncio.run(ask())
    assert routed.result.backend == "vllm"
    assert routed.fallback is None
