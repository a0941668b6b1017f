"""The backend policy and its circuit breakers, on backends that fail on command.

The real deployments behind the policy are exercised in tests/integration/test_failover.py; here
each backend is a small object with the same two methods, so every branch is reached exactly.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np
import pytest

from deploy.api.error_body import error_body
from deploy.config.settings import CircuitBreakerSettings
from deploy.core.errors import (
    BackendTimeout,
    EngineError,
    Failure,
    InvalidRequest,
    ServiceUnavailable,
    VidserveError,
)
from deploy.core.messages import (
    Delta,
    FrameBatch,
    GenerationParams,
    InferenceRequest,
    InferenceResult,
    MediaKind,
    StoredFrames,
)
from deploy.serving.backends import (
    BackendRouter,
    CircuitBreaker,
    CircuitState,
    OpenedStream,
)

SETTINGS = CircuitBreakerSettings(failure_threshold=2, open_s=10.0, probe_timeout_s=1.0)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Backend:
    name: str
    error: VidserveError | None = None
    ready_error: VidserveError | None = None
    mid_stream_error: VidserveError | None = None
    calls: int = 0
    probes: int = 0
    seen: list[InferenceRequest] = field(default_factory=list)

    async def answer(self, request: InferenceRequest) -> InferenceResult:
        self.calls += 1
        self.seen.append(request)
        if self.error is not None:
            raise self.error
        return InferenceResult(
            text=f"from {self.name}",
            model="m",
            backend=self.name,
            prompt_tokens=1,
            completion_tokens=1,
        )

    async def open_stream(self, request: InferenceRequest) -> OpenedStream:
        self.calls += 1
        if self.error is not None:
            raise self.error
        pieces = [Delta(p, "m", self.name) for p in ("from ", self.name)]
        return OpenedStream(pieces[0], self._rest(pieces[1:]))

    async def _rest(self, pieces: list[Delta]) -> AsyncIterator[Delta]:
        for piece in pieces:
            yield piece
        if self.mid_stream_error is not None:
            raise self.mid_stream_error

    async def ready(self, timeout_s: float) -> str:
        self.probes += 1
        if self.ready_error is not None:
            raise self.ready_error
        return f"{self.name}-model"


class Metrics:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.fallbacks: list[tuple[str, str, str]] = []

    def request(self, backend: str, outcome: str) -> None:
        self.requests.append((backend, outcome))

    def fallback(self, from_backend: str, to_backend: str, reason: str) -> None:
        self.fallbacks.append((from_backend, to_backend, reason))


def _request() -> InferenceRequest:
    frames = np.zeros((2, 28, 28, 3), np.uint8)
    media = FrameBatch.of(
        frames,
        kind=MediaKind.VIDEO,
        indices=[0, 1],
        timestamps_s=[0.0, 1.0],
        source_fps=1.0,
        duration_s=2.0,
        source_width=28,
        source_height=28,
        total_frames=2,
    )
    return InferenceRequest.ask("what?", StoredFrames.inline(media), GenerationParams(max_tokens=8))


def _router(*backends: Backend, clock: Clock | None = None) -> tuple[BackendRouter, Metrics]:
    metrics = Metrics()
    return BackendRouter(list(backends), SETTINGS, metrics, clock or Clock()), metrics


def test_the_primary_answers_when_it_can() -> None:
    vllm, ollama = Backend("vllm"), Backend("ollama")
    router, metrics = _router(vllm, ollama)
    routed = asyncio.run(router.answer(_request()))
    assert routed.result.backend == "vllm"
    assert routed.fallback is None
    assert (vllm.calls, ollama.calls) == (1, 0)
    assert metrics.requests == [("vllm", "ok")]


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (BackendTimeout("slow", code="vllm_timeout"), "timeout"),
        (EngineError("dead", code="vllm_engine_error"), "engine_error"),
        (ServiceUnavailable("full", code="x", failure=Failure.OVERLOADED), "overloaded"),
        (ServiceUnavailable("gone", code="x", failure=Failure.NOT_DEPLOYED), "not_deployed"),
        (ServiceUnavailable("died", code="x", failure=Failure.REPLICA_DIED), "replica_died"),
        (ServiceUnavailable("down", code="ollama_unreachable"), "unavailable"),
    ],
)
def test_a_failing_primary_hands_the_same_request_to_the_fallback(
    error: VidserveError, reason: str
) -> None:
    assert error.kind == reason
    assert pickle.loads(pickle.dumps(error)).kind == reason  # it crosses replicas intact
    vllm, ollama = Backend("vllm", error=error), Backend("ollama")
    router, metrics = _router(vllm, ollama)
    request = _request()
    routed = asyncio.run(router.answer(request))
    assert routed.result.backend == "ollama"
    assert routed.fallback is not None
    assert (routed.fallback.from_backend, routed.fallback.reason) == ("vllm", reason)
    assert ollama.seen == [request]
    assert metrics.requests == [("vllm", reason), ("ollama", "ok")]
    assert metrics.fallbacks == [("vllm", "ollama", reason)]


def test_a_request_error_is_returned_without_falling_back() -> None:
    vllm = Backend("vllm", error=InvalidRequest("too long for the model", code="invalid_for_model"))
    ollama = Backend("ollama")
    router, metrics = _router(vllm, ollama)
    with pytest.raises(InvalidRequest, match="too long"):
        asyncio.run(router.answer(_request()))
    assert ollama.calls == 0
    assert metrics.fallbacks == []
    assert router.breaker("vllm").failures == 0


def test_both_down_is_a_503_naming_the_state_of_each() -> None:
    vllm = Backend(
        "vllm",
        error=ServiceUnavailable(
            "replica died", code="vllm_replica_died", failure=Failure.REPLICA_DIED
        ),
    )
    ollama = Backend("ollama", error=ServiceUnavailable("not reachable", code="ollama_unreachable"))
    router, _ = _router(vllm, ollama)
    with pytest.raises(ServiceUnavailable) as info:
        asyncio.run(router.answer(_request()))
    error = info.value
    assert error.code == "no_backend_available"
    assert error.details == {
        "backends": {
            "vllm": "replica_died: replica died",
            "ollama": "unavailable: not reachable",
        }
    }
    body = error_body(error)["error"]
    assert body["backends"]["ollama"] == "unavailable: not reachable"


def test_a_single_backend_keeps_its_own_error_status() -> None:
    ollama = Backend("ollama", error=BackendTimeout("Ollama did not answer", code="ollama_timeout"))
    router, _ = _router(ollama)
    with pytest.raises(BackendTimeout) as info:
        asyncio.run(router.answer(_request()))
    assert info.value.status_code == 504
    assert info.value.details == {"backends": {"ollama": "timeout: Ollama did not answer"}}


def test_an_open_circuit_skips_the_primary_until_a_probe_succeeds() -> None:
    clock = Clock()
    vllm = Backend("vllm", error=EngineError("engine dead", code="vllm_engine_error"))
    ollama = Backend("ollama")
    router, metrics = _router(vllm, ollama, clock=clock)

    async def scenario() -> None:
        for _ in range(SETTINGS.failure_threshold):
            assert (await router.answer(_request())).result.backend == "ollama"
        assert router.breaker("vllm").state is CircuitState.OPEN
        calls = vllm.calls
        routed = await router.answer(_request())
        assert routed.fallback is not None
        assert routed.fallback.reason == "circuit_open"
        assert vllm.calls == calls  # skipped: no time spent on the dead primary
        # open_s later the next request starts a probe; the probe fails: still open.
        vllm.ready_error = ServiceUnavailable("still starting", code="vllm_timeout")
        clock.now += SETTINGS.open_s
        await router.answer(_request())
        await asyncio.sleep(0)
        assert vllm.probes == 1
        assert router.breaker("vllm").state is CircuitState.OPEN
        # The primary recovers; the next probe closes the circuit and traffic returns.
        vllm.ready_error = None
        vllm.error = None
        clock.now += SETTINGS.open_s
        assert (await router.answer(_request())).result.backend == "ollama"
        await asyncio.sleep(0)
        assert router.breaker("vllm").state is CircuitState.CLOSED
        assert (await router.answer(_request())).result.backend == "vllm"

    asyncio.run(scenario())
    assert ("vllm", "circuit_open") in metrics.requests
    assert ("vllm", "ollama", "circuit_open") in metrics.fallbacks


def test_overload_does_not_open_the_circuit() -> None:
    breaker_failures = []
    vllm = Backend(
        "vllm",
        error=ServiceUnavailable("queue full", code="vllm_overloaded", failure=Failure.OVERLOADED),
    )
    router, _ = _router(vllm, Backend("ollama"))
    for _ in range(5):
        asyncio.run(router.answer(_request()))
        breaker_failures.append(router.breaker("vllm").failures)
    assert breaker_failures == [0] * 5
    assert router.breaker("vllm").state is CircuitState.CLOSED


def test_successes_reset_the_failure_count() -> None:
    breaker = CircuitBreaker(SETTINGS, Clock())
    breaker.record_failure("one")
    breaker.record_success()
    breaker.record_failure("two")
    assert breaker.state is CircuitState.CLOSED
    breaker.record_failure("three")
    assert breaker.state is CircuitState.OPEN
    assert "last: three" in breaker.describe()


def test_status_reports_each_backend_and_its_circuit() -> None:
    vllm = Backend("vllm", ready_error=ServiceUnavailable("loading", code="vllm_timeout"))
    router, _ = _router(vllm, Backend("ollama"))
    status = asyncio.run(router.status(1.0))
    assert status == {
        "vllm": {"circuit": "closed", "ready": False, "reason": "loading"},
        "ollama": {"circuit": "closed", "ready": True, "model": "ollama-model"},
    }


def test_a_backend_down_across_many_probes_is_logged_once_each_way(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ray.serve.vidserve.backends")
    vllm = Backend("vllm", ready_error=ServiceUnavailable("loading", code="vllm_timeout"))
    router, _ = _router(vllm, Backend("ollama"))

    async def probes(times: int) -> None:
        for _ in range(times):
            await router.status(1.0)

    asyncio.run(probes(6))
    vllm.ready_error = None
    asyncio.run(probes(6))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("vllm ")]
    assert lines == [
        "vllm is down: loading",
        lines[1],
    ]
    assert lines[1].startswith("vllm is back after")
    assert lines[1].endswith("(it had been: loading)")


async def _drain(router: BackendRouter) -> tuple[str, str, object]:
    routed = await router.stream(_request())
    pieces = [routed.result.first.text]
    async for delta in routed.result.rest:
        pieces.append(delta.text)
    return "".join(pieces), routed.result.first.backend, routed.fallback


def test_a_stream_falls_back_when_the_primary_fails_before_its_first_piece() -> None:
    vllm = Backend("vllm", error=EngineError("dead", code="vllm_engine_error"))
    ollama = Backend("ollama")
    router, metrics = _router(vllm, ollama)
    text, backend, fallback = asyncio.run(_drain(router))
    assert (text, backend) == ("from ollama", "ollama")
    assert fallback is not None
    assert metrics.fallbacks == [("vllm", "ollama", "engine_error")]


def test_a_failure_after_the_first_piece_ends_the_stream_and_counts_against_the_backend() -> None:
    vllm = Backend("vllm", mid_stream_error=EngineError("died", code="vllm_engine_error"))
    ollama = Backend("ollama")
    router, _ = _router(vllm, ollama)
    for _ in range(SETTINGS.failure_threshold):
        with pytest.raises(EngineError):
            asyncio.run(_drain(router))
    assert ollama.calls == 0  # text already sent cannot be taken back: no fallback mid-stream
    assert router.breaker("vllm").state is CircuitState.OPEN
    text, backend, _ = asyncio.run(_drain(router))
    assert (text, backend) == ("from ollama", "ollama")
