"""/readyz under a flood of probes, and what it tells a caller without a key (issue 26).

Before: every /readyz asked every backend replica again, so a flood of probes filled the
replicas' slots and some probes answered 503 (on Kubernetes that takes a healthy pod out of
service); and the body carried each backend's raw failure (internal hosts, engine errors) to
anyone. The real Starlette app of the ingress, driven concurrently over ASGI by httpx.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from deploy.api.auth import ApiKeys
from deploy.config.settings import AppArgs
from deploy.core.errors import Overloaded, ServiceUnavailable
from deploy.ingress import build_http_app
from deploy.serving.backends import BackendRouter
from deploy.serving.pipeline import AnalyzePipeline
from tests.support.recorders import MetricsRecorder

MODEL = "qwen2.5vl:7b"
KEY = "readiness-key-0123456789"
INTERNAL = "http://10.11.12.13:11434"


class _SlotsBackend:
    """A replica with few slots: readiness probes past them are refused, as Serve's queue is."""

    def __init__(self, name: str, slots: int = 2, down: bool = False) -> None:
        self.name = name
        self.slots = slots
        self.down = down
        self.busy = 0
        self.probes = 0

    async def ready(self, timeout_s: float) -> str:
        self.probes += 1
        if self.down:
            raise ServiceUnavailable(f"the Ollama server at {INTERNAL} is not reachable")
        if self.busy >= self.slots:
            raise Overloaded("the vllm stage is overloaded: its queue is full")
        self.busy += 1
        try:
            await asyncio.sleep(0.05)
        finally:
            self.busy -= 1
        return MODEL


def _app(backends: list[_SlotsBackend], keys: list[str] | None = None) -> httpx.AsyncClient:
    args = AppArgs.model_validate({"backends": {"primary": "ollama", "fallback": "none"}})
    router = BackendRouter(backends, args.backends.circuit_breaker)  # type: ignore[arg-type]
    pipeline = AnalyzePipeline(extractor=None, router=router, args=args)  # type: ignore[arg-type]
    app = build_http_app(pipeline, args, ApiKeys(keys or []), MetricsRecorder())
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


def test_a_flood_of_probes_all_answer_ready_and_asks_the_backend_a_few_times() -> None:
    backend = _SlotsBackend("ollama", slots=2)

    async def flood() -> list[int]:
        async with _app([backend]) as client:
            responses = await asyncio.gather(*(client.get("/readyz") for _ in range(200)))
        return [r.status_code for r in responses]

    statuses = asyncio.run(flood())
    assert statuses.count(200) == 200, sorted(set(statuses))
    assert backend.probes <= 3  # one check answers every probe of its moment


@pytest.mark.parametrize("authorized", [False, True])
def test_readyz_tells_internal_detail_only_to_a_caller_with_a_key(authorized: bool) -> None:
    backend = _SlotsBackend("ollama", down=True)
    headers = {"Authorization": f"Bearer {KEY}"} if authorized else {}

    async def probe() -> httpx.Response:
        async with _app([backend], keys=[KEY]) as client:
            return await client.get("/readyz", headers=headers)

    response = asyncio.run(probe())
    assert response.status_code == 503
    assert response.json()["status"] == "not_ready"
    assert (INTERNAL in response.text) is authorized, response.text
