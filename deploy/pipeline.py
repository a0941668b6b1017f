"""Where an analyze request goes after the HTTP layer: extractor, then the backend policy.

No HTTP here: the ingress parses the request and renders the answer; this module checks that the
model can see what was sent, calls the extractor through its handle, hands the frames to the
`BackendRouter` (vLLM, Ollama, fallback) and times each stage.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ray.serve.handle import DeploymentHandle

from deploy.analyze_request import AnalyzeRequest
from deploy.backends import BackendRouter
from deploy.catalog import DEFAULT_VISION_HF_ID, DEFAULT_VISION_OLLAMA_TAG
from deploy.config import AppArgs, Backend
from deploy.errors import ServiceUnavailable, UnprocessableInput
from deploy.handles import call_stage
from deploy.schemas import (
    AnalyzeResponse,
    FrameBatch,
    FramesInfo,
    InferenceRequest,
    MediaKind,
    Timings,
    Usage,
)

logger = logging.getLogger("ray.serve.vidserve.pipeline")

# Extraction of even long videos takes seconds; past this something is wrong.
EXTRACT_TIMEOUT_S = 120.0
READY_TIMEOUT_S = 2.0


class AnalyzePipeline:
    def __init__(self, extractor: DeploymentHandle[Any], router: BackendRouter, args: AppArgs):
        self._extractor = extractor
        self._router = router
        self._args = args
        # Known once (it may read the model's config.json), not per request.
        self._primary_sees = args.vision_of(args.backends.primary)

    def check_can_see(self, kind: MediaKind) -> None:
        """A 422 before any decoding when the primary model is known to be text-only."""
        primary = self._args.backends.primary
        if self._primary_sees is not False:
            return
        suggestion = DEFAULT_VISION_HF_ID if primary is Backend.VLLM else DEFAULT_VISION_OLLAMA_TAG
        setting = "llm.model / VLLM_MODEL_PATH" if primary is Backend.VLLM else "ollama.model"
        raise UnprocessableInput(
            f"the model {self._args.model_of(primary)!r} is text-only and cannot take "
            f"{'images' if kind is MediaKind.IMAGE else 'video'}; serve a vision model such as "
            f"{suggestion!r} ({setting})",
            code="model_cannot_see",
        )

    async def analyze(
        self, kind: MediaKind, data: bytes, request: AnalyzeRequest, received_at: float
    ) -> AnalyzeResponse:
        """`received_at` (perf_counter) is when the request arrived: total_s counts the upload."""
        self.check_can_see(kind)
        started = time.perf_counter()
        batch: FrameBatch = await call_stage(
            self._extractor.extract.remote(data, request.sampling, kind),
            stage="extract",
            timeout_s=EXTRACT_TIMEOUT_S,
        )
        extracted = time.perf_counter()
        routed = await self._router.answer(
            InferenceRequest(prompt=request.prompt, media=batch, params=request.params)
        )
        result = routed.result
        finished = time.perf_counter()
        return AnalyzeResponse(
            answer=result.text,
            model=result.model,
            backend=result.backend,
            fallback=routed.fallback,
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

    async def ready(self) -> dict[str, Any]:
        """Each backend's state; raises ServiceUnavailable (naming them) when none can answer."""
        backends = await self._router.status(READY_TIMEOUT_S)
        if not any(state["ready"] for state in backends.values()):
            summary = "; ".join(f"{name}: {s['reason']}" for name, s in backends.items())
            raise ServiceUnavailable(
                f"no backend can answer yet ({summary})",
                code="not_ready",
                details={"backends": backends},
            )
        return backends
