"""Backend policy: which engine answers, when to fall back, and the circuit breakers.

    primary (vllm | ollama) --fails--> fallback (ollama | none) --fails--> 503 naming both

A backend is skipped (fallback, no waiting) when its circuit is open. It is tried and, on failure,
left for the next one when it is not deployed, has no replica that takes the request within
`backends.assign_timeout_s` (dead, starting, draining: the request never waits for one to be
started), its replica dies mid-request, its queue is full, its engine fails, or it does not
answer within its timeout. An error caused by the request itself (4xx)
is returned as is: another backend would refuse it too.

Each backend has a circuit breaker: `failure_threshold` consecutive failures open it; after
`open_s` a probe (the backend's readiness check, off the request path) runs and closes it when
the backend answers, so traffic returns to the primary. State is per ingress replica.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

from ray.serve.handle import DeploymentHandle, DeploymentResponse, DeploymentResponseGenerator

from deploy.config.settings import AppArgs, Backend, CircuitBreakerSettings
from deploy.core.errors import EngineError, Failure, ServiceUnavailable, VidserveError
from deploy.core.messages import Delta, FallbackInfo, InferenceRequest, InferenceResult
from deploy.serving.handles import call_stage, next_item
from deploy.serving.health import HealthLog, Readiness
from deploy.serving.metrics import BackendMetrics

logger = logging.getLogger("ray.serve.vidserve.backends")

Clock = Callable[[], float]
T = TypeVar("T")


class BackendClient(Protocol):
    """One engine behind the policy (in production: a deployment handle, `HandleBackend`)."""

    name: str

    async def answer(self, request: InferenceRequest) -> InferenceResult: ...

    async def open_stream(self, request: InferenceRequest) -> OpenedStream:
        """Start a streamed answer: returns once the first piece has arrived."""
        ...

    async def ready(self, timeout_s: float) -> str: ...


@dataclass(frozen=True)
class OpenedStream:
    """A streamed answer whose first piece has arrived (so the backend is known to answer)."""

    first: Delta
    rest: AsyncIterator[Delta]


class HandleBackend:
    """A backend deployment reached through its Serve handle (methods `answer` and `ready`).

    `assign_timeout_s` (backends.assign_timeout_s; set on every backend but the last): a call
    that Serve's router has not handed to a replica within it is taken back and fails with
    `no_replica`, so the next backend answers instead of the request waiting for a replica to
    be started (a killed vLLM replica takes ~40 s to come back on CPU, minutes on a GPU)."""

    def __init__(
        self,
        name: str,
        handle: DeploymentHandle[Any],
        timeout_s: float,
        assign_timeout_s: float | None = None,
    ) -> None:
        self.name = name
        self._handle = handle
        self._timeout_s = timeout_s
        self._assign_timeout_s = assign_timeout_s

    async def answer(self, request: InferenceRequest) -> InferenceResult:
        response = self._handle.answer.remote(request)
        await self._assigned(response)
        result: InferenceResult = await call_stage(
            response, stage=self.name, timeout_s=self._timeout_s
        )
        return result

    async def _assigned(
        self, response: DeploymentResponse[Any] | DeploymentResponseGenerator[Any]
    ) -> None:
        """Wait (at most assign_timeout_s) until a replica has taken the call."""
        if self._assign_timeout_s is None:
            return
        # Ray 2.60: the future of the replica a call is assigned to (DeploymentResponse).
        assignment = getattr(response, "_fetch_future_result_async", None)
        if assignment is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(assignment()), timeout=self._assign_timeout_s)
        except TimeoutError:
            response.cancel()  # out of the primary's queue: it must not run later as well
            raise ServiceUnavailable(
                f"no {self.name} replica took the request within {self._assign_timeout_s:g} s "
                "(backends.assign_timeout_s): none is running (dead, starting, draining) or "
                "every one is full",
                code=f"{self.name}_no_replica",
                failure=Failure.NO_REPLICA,
            ) from None
        except Exception:  # noqa: BLE001 - a failed assignment is raised, typed, by call_stage
            return

    async def open_stream(self, request: InferenceRequest) -> OpenedStream:
        stream = self._handle.options(stream=True).answer_stream.remote(request)
        await self._assigned(stream)
        try:
            first = await next_item(stream, stage=self.name, timeout_s=self._timeout_s)
        except StopAsyncIteration:
            raise EngineError(
                f"{self.name} ended its answer without any output", code=f"{self.name}_failed"
            ) from None
        return OpenedStream(first, self._rest(stream))

    async def _rest(
        self, stream: DeploymentResponse[Any] | DeploymentResponseGenerator[Any]
    ) -> AsyncIterator[Delta]:
        finished = False
        try:
            while True:
                try:
                    delta: Delta = await next_item(
                        stream, stage=self.name, timeout_s=self._timeout_s
                    )
                except StopAsyncIteration:
                    finished = True
                    return
                yield delta
        finally:
            if not finished:  # the client went away, or an error: stop generating
                stream.cancel()

    async def ready(self, timeout_s: float) -> str:
        """The replica answers a Readiness (serving/health.py); not ready is raised here."""
        readiness: Readiness = await call_stage(
            self._handle.ready.remote(), stage=self.name, timeout_s=timeout_s
        )
        return readiness.model_or_raise()


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """closed --N failures--> open --open_s--> half_open (one probe) --ok--> closed / --> open"""

    def __init__(self, settings: CircuitBreakerSettings, clock: Clock = time.monotonic) -> None:
        self._settings = settings
        self._clock = clock
        self.state = CircuitState.CLOSED
        self.failures = 0
        self.last_failure = ""
        self._opened_at = 0.0

    def allows_requests(self) -> bool:
        return self.state is CircuitState.CLOSED

    def record_success(self) -> None:
        if self.state is CircuitState.CLOSED:
            self.failures = 0

    def record_failure(self, detail: str) -> None:
        self.failures += 1
        self.last_failure = detail
        if self.state is CircuitState.CLOSED and self.failures >= self._settings.failure_threshold:
            self._open()

    def probe_due(self) -> bool:
        return (
            self.state is CircuitState.OPEN
            and self._clock() - self._opened_at >= self._settings.open_s
        )

    def start_probe(self) -> None:
        self.state = CircuitState.HALF_OPEN

    def probe_succeeded(self) -> None:
        self.state = CircuitState.CLOSED
        self.failures = 0

    def probe_failed(self, detail: str) -> None:
        self.last_failure = detail
        self._open()

    def describe(self) -> str:
        if self.state is CircuitState.CLOSED:
            return "closed"
        return (
            f"circuit {self.state.value} after {self.failures} failure(s), "
            f"last: {self.last_failure}"
        )

    def _open(self) -> None:
        self.state = CircuitState.OPEN
        self._opened_at = self._clock()


@dataclass(frozen=True)
class Routed(Generic[T]):
    """What a backend returned, and why it was not the primary when it was not."""

    result: T
    fallback: FallbackInfo | None


class BackendRouter:
    """Tries the backends in policy order; see the module docstring."""

    def __init__(
        self,
        backends: Sequence[BackendClient],
        breaker: CircuitBreakerSettings,
        metrics: BackendMetrics | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        if not backends:
            raise ValueError("at least one backend is needed")
        self._backends = list(backends)
        self._settings = breaker
        self._breakers = {b.name: CircuitBreaker(breaker, clock) for b in self._backends}
        # Readiness as this ingress sees it, logged when it changes (not per probe).
        self._health = {b.name: HealthLog(b.name, logger, clock) for b in self._backends}
        self._metrics = metrics
        self._probes: dict[str, asyncio.Task[None]] = {}

    @property
    def names(self) -> list[str]:
        return [b.name for b in self._backends]

    def breaker(self, name: str) -> CircuitBreaker:
        return self._breakers[name]

    async def answer(self, request: InferenceRequest) -> Routed[InferenceResult]:
        return await self._route(lambda backend: backend.answer(request))

    async def stream(self, request: InferenceRequest) -> Routed[OpenedStream]:
        """A streamed answer. The policy applies until the first piece arrives; a failure after
        that ends the stream with the error (the text already sent cannot be taken back)."""
        # The backend's health is judged when the stream ends, not when it starts.
        routed = await self._route(lambda backend: backend.open_stream(request), settle=False)
        opened = routed.result
        watched = self._watch(opened.first.backend, opened.rest)
        return Routed(OpenedStream(opened.first, watched), routed.fallback)

    async def _watch(self, name: str, rest: AsyncIterator[Delta]) -> AsyncIterator[Delta]:
        breaker = self._breakers[name]
        try:
            async for delta in rest:
                yield delta
        except VidserveError as exc:
            if exc.status_code >= 500:
                breaker.record_failure(exc.message)
            logger.warning("%s failed while streaming: %s", name, exc.message)
            raise
        breaker.record_success()

    async def _route(
        self, call: Callable[[BackendClient], Awaitable[T]], settle: bool = True
    ) -> Routed[T]:
        """`settle`: a result counts as the backend's success (False: the caller decides)."""
        states: dict[str, str] = {}
        errors: list[VidserveError] = []
        first_reason: str | None = None
        for position, backend in enumerate(self._backends):
            breaker = self._breakers[backend.name]
            if breaker.allows_requests():
                try:
                    result = await call(backend)
                except VidserveError as exc:
                    if exc.status_code < 500:
                        breaker.record_success()  # the backend answered; the request was bad
                        self._count(backend.name, "client_error")
                        raise
                    reason = exc.kind.value
                    if reason != Failure.OVERLOADED:  # a full queue is load, not ill health
                        breaker.record_failure(exc.message)
                    states[backend.name] = f"{reason}: {exc.message}"
                    errors.append(exc)
                    self._count(backend.name, reason)
                else:
                    if settle:
                        breaker.record_success()
                    self._count(backend.name, "ok")
                    fallback = None
                    if position > 0 and first_reason is not None:
                        fallback = FallbackInfo(from_backend=self.names[0], reason=first_reason)
                    return Routed(result, fallback)
            else:
                reason = "circuit_open"
                states[backend.name] = breaker.describe()
                self._count(backend.name, reason)
                self._maybe_probe(backend)
            first_reason = first_reason or reason
            if position + 1 < len(self._backends):
                self._note_fallback(
                    backend.name, self._backends[position + 1].name, reason, states[backend.name]
                )
        raise self._exhausted(states, errors)

    async def status(self, timeout_s: float) -> dict[str, dict[str, Any]]:
        """Each backend's readiness (asked concurrently) and circuit state."""
        for backend in self._backends:
            self._maybe_probe(backend)
        results = await asyncio.gather(
            *(b.ready(timeout_s) for b in self._backends), return_exceptions=True
        )
        status: dict[str, dict[str, Any]] = {}
        for backend, outcome in zip(self._backends, results, strict=True):
            entry: dict[str, Any] = {"circuit": self._breakers[backend.name].state.value}
            if isinstance(outcome, VidserveError):
                entry.update(ready=False, reason=outcome.message)
                self._health[backend.name].update(False, outcome.message)
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                entry.update(ready=True, model=outcome)
                self._health[backend.name].update(True)
            status[backend.name] = entry
        return status

    def _note_fallback(self, source: str, target: str, reason: str, state: str) -> None:
        logger.warning("falling back from %s to %s: %s", source, target, state)
        if self._metrics is not None:
            self._metrics.fallback(source, target, reason)

    def _count(self, backend: str, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.request(backend, outcome)

    def _exhausted(self, states: dict[str, str], errors: list[VidserveError]) -> VidserveError:
        details = {"backends": states}
        if len(self._backends) == 1 and errors:
            only = errors[0]
            return type(only)(
                only.message,
                code=only.code,
                param=only.param,
                details=details,
                failure=only.failure,
            )
        summary = "; ".join(f"{name}: {state}" for name, state in states.items())
        # Every backend full: load, not ill health (the client is told when to retry).
        full = bool(errors) and all(e.kind is Failure.OVERLOADED for e in errors)
        return ServiceUnavailable(
            f"no backend could answer ({summary})",
            code="no_backend_available",
            details=details,
            failure=Failure.OVERLOADED if full else None,
        )

    def _maybe_probe(self, backend: BackendClient) -> None:
        breaker = self._breakers[backend.name]
        if not breaker.probe_due() or backend.name in self._probes:
            return
        breaker.start_probe()
        # Kept referenced until it finishes (the event loop holds tasks only weakly).
        self._probes[backend.name] = asyncio.create_task(self._probe(backend, breaker))

    async def _probe(self, backend: BackendClient, breaker: CircuitBreaker) -> None:
        try:
            await backend.ready(self._settings.probe_timeout_s)
        except VidserveError as exc:
            breaker.probe_failed(f"probe: {exc.message}")
            self._health[backend.name].update(False, exc.message)  # said once, when it changes
        else:
            breaker.probe_succeeded()
            self._health[backend.name].update(True)
            logger.warning("%s answered its probe; circuit closed, traffic returns", backend.name)
        finally:
            self._probes.pop(backend.name, None)
            if breaker.state is CircuitState.HALF_OPEN:  # the probe raised something unexpected
                breaker.probe_failed("probe: did not complete")


def router_for(
    backends: dict[str, DeploymentHandle[Any]], args: AppArgs, metrics: BackendMetrics
) -> BackendRouter:
    """The backend policy of `args.backends` over these deployments' handles: each backend
    with its request timeout, and an assignment bound where there is a next one to go to."""
    timeouts = {
        Backend.VLLM: args.llm.request_timeout_s,
        Backend.OLLAMA: args.ollama.request_timeout_s,
    }
    order = args.backends.order
    bounds = [args.backends.assign_timeout_s] * (len(order) - 1) + [None]
    return BackendRouter(
        [
            HandleBackend(b.value, backends[b.value], timeouts[b], bound)
            for b, bound in zip(order, bounds, strict=True)
        ],
        args.backends.circuit_breaker,
        metrics,
    )
