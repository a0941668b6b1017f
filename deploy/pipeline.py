"""Where an analyze request goes after the HTTP layer: extractor, then engine.

No HTTP here: the ingress parses the request and renders the answer; this module calls the
deployments through their handles, times each stage and turns Ray's failures into typed errors.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, RayServeException
from ray.serve.handle import DeploymentHandle, DeploymentResponse, DeploymentResponseGenerator

from deploy.analyze_request import AnalyzeRequest
from deploy.config import AppArgs
from deploy.errors import BackendTimeout, ServiceUnavailable, VidserveError
from deploy.schemas import (
    AnalyzeResponse,
    FrameBatch,
    FramesInfo,
    InferenceRequest,
    InferenceResult,
    MediaKind,
    Timings,
    Usage,
)

logger = logging.getLogger("ray.serve.vidserve.pipeline")

T = TypeVar("T")

# Extraction of even long videos takes seconds; past this something is wrong.
EXTRACT_TIMEOUT_S = 120.0
READY_TIMEOUT_S = 2.0


async def call_stage(
    response: DeploymentResponse[Any] | DeploymentResponseGenerator[Any],
    *,
    stage: str,
    timeout_s: float,
) -> Any:
    """Await one deployment call; typed errors come through, Ray's failures become 503/504."""
    try:
        return await asyncio.wait_for(_await(response), timeout=timeout_s)  # type: ignore[arg-type]
    except TimeoutError:
        response.cancel()
        raise BackendTimeout(
            f"the {stage} stage did not finish within {timeout_s:g}s", code=f"{stage}_timeout"
        ) from None
    except RayTaskError as exc:
        if isinstance(exc.cause, VidserveError):
            raise exc.cause from None
        raise
    except (BackPressureError, DeploymentUnavailableError) as exc:
        raise ServiceUnavailable(
            f"the {stage} stage is overloaded or has no replica: {exc}", code=f"{stage}_unavailable"
        ) from None
    except (RayActorError, RayServeException) as exc:
        raise ServiceUnavailable(
            f"the {stage} replica failed while handling the request: {type(exc).__name__}",
            code=f"{stage}_unavailable",
        ) from None


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


class AnalyzePipeline:
    def __init__(
        self, extractor: DeploymentHandle[Any], engine: DeploymentHandle[Any], args: AppArgs
    ):
        self._extractor = extractor
        self._engine = engine
        self._args = args

    async def analyze(
        self, kind: MediaKind, data: bytes, request: AnalyzeRequest, received_at: float
    ) -> AnalyzeResponse:
        """`received_at` (perf_counter) is when the request arrived: total_s counts the upload."""
        started = time.perf_counter()
        batch: FrameBatch = await call_stage(
            self._extractor.extract.remote(data, request.sampling, kind),
            stage="extract",
            timeout_s=EXTRACT_TIMEOUT_S,
        )
        extracted = time.perf_counter()
        result: InferenceResult = await call_stage(
            self._engine.answer.remote(
                InferenceRequest(prompt=request.prompt, media=batch, params=request.params)
            ),
            stage="inference",
            timeout_s=self._args.llm.request_timeout_s,
        )
        finished = time.perf_counter()
        return AnalyzeResponse(
            answer=result.text,
            model=result.model,
            backend=result.backend,
            frames=FramesInfo(count=batch.count, timestamps=batch.timestamps_s),
            timings=Timings(
                extract_s=round(extracted - started, 4),
                inference_s=round(finished - extracted, 4),
                total_s=round(finished - received_at, 4),
            ),
            usage=Usage(
                prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens
            ),
        )

    async def ready(self) -> str:
        """The served model id once the engine can answer; raises ServiceUnavailable before."""
        try:
            model: str = await call_stage(
                self._engine.ready.remote(), stage="engine", timeout_s=READY_TIMEOUT_S
            )
        except BackendTimeout:
            raise ServiceUnavailable(
                "the engine is not ready yet (starting, or all replicas busy)", code="not_ready"
            ) from None
        return model
