"""Where a request goes after the HTTP layer: download (URLs), extractor, backend policy.

No HTTP here: the ingress (analyze) and `openai_api` (chat) parse requests and render answers;
this module checks that the model can see what was sent, downloads URLs through the SSRF guard,
calls the extractor through its handle, hands the frames to the `BackendRouter` (vLLM, Ollama,
fallback) and times each stage.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ray.serve.handle import DeploymentHandle

from deploy.analyze_request import AnalyzeRequest
from deploy.backends import BackendRouter, OpenedStream, Routed
from deploy.catalog import DEFAULT_VISION_HF_ID, DEFAULT_VISION_OLLAMA_TAG
from deploy.config import AppArgs, Backend
from deploy.errors import ServiceUnavailable, UnprocessableInput, VidserveError
from deploy.fetch import UrlFetcher
from deploy.handles import call_stage
from deploy.metrics import StageMetrics
from deploy.schemas import (
    AnalyzeResponse,
    Delta,
    FrameBatch,
    FramesInfo,
    InferenceRequest,
    InferenceResult,
    MediaKind,
    SamplingOptions,
    Timings,
    Usage,
)
from deploy.video.container import sniff

logger = logging.getLogger("ray.serve.vidserve.pipeline")

# Extraction of even long videos takes seconds; past this something is wrong.
EXTRACT_TIMEOUT_S = 120.0
READY_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class MediaSource:
    """Where a request's video or image is: uploaded bytes, a URL, or a list of frame images.
    `kind` None: told by the bytes. `param` names it in errors (e.g. `messages[0].content[1]`)."""

    param: str
    kind: MediaKind | None = None
    data: bytes | None = None
    url: str | None = None
    frames: list[bytes] | None = None


@dataclass(frozen=True)
class Loaded:
    batch: FrameBatch
    download_s: float
    extract_s: float


class AnalyzePipeline:
    def __init__(
        self,
        extractor: DeploymentHandle[Any],
        router: BackendRouter,
        args: AppArgs,
        metrics: StageMetrics | None = None,
    ):
        self._extractor = extractor
        self._router = router
        self._args = args
        self._metrics = metrics
        self._fetcher = UrlFetcher(
            args.url_fetch,
            max_bytes=min(args.url_fetch.max_bytes, args.extraction.max_upload_bytes),
        )
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

    def _observe(self, stage: str, seconds: float) -> None:
        if self._metrics is not None:
            self._metrics.stage(stage, seconds)

    def uploaded(self, seconds: float) -> None:
        """The request body took `seconds` to arrive (the HTTP layer times it)."""
        self._observe("upload", seconds)

    async def load(self, source: MediaSource, sampling: SamplingOptions) -> Loaded:
        """Frames from an upload, a URL (downloaded here, SSRF-guarded) or a list of frames."""
        self.check_can_see(source.kind or MediaKind.VIDEO)
        started = time.perf_counter()
        if source.frames is not None:
            batch: FrameBatch = await call_stage(
                self._extractor.from_images.remote(source.frames, sampling, source.param),
                stage="extract",
                timeout_s=EXTRACT_TIMEOUT_S,
            )
            return self._loaded(batch, 0.0, time.perf_counter() - started)
        data = source.data
        if data is None:
            try:
                data = await self._fetcher.fetch(source.url or "")
            except VidserveError as exc:
                exc.param = source.param
                raise
            self._observe("download", time.perf_counter() - started)
        downloaded = time.perf_counter()
        kind = source.kind or sniff(data[:512]).kind or MediaKind.VIDEO
        batch = await call_stage(
            self._extractor.extract.remote(data, sampling, kind, source.param),
            stage="extract",
            timeout_s=EXTRACT_TIMEOUT_S,
        )
        return self._loaded(batch, downloaded - started, time.perf_counter() - downloaded)

    def _loaded(self, batch: FrameBatch, download_s: float, extract_s: float) -> Loaded:
        """`extract_s` is the wall time here; the replica's own decoding time is in the batch:
        the difference is queueing for (and travelling to) an extractor."""
        self._observe("extract", batch.extract_s)
        self._observe("extract_queue", extract_s - batch.extract_s)
        return Loaded(batch, download_s, extract_s)

    async def answer(self, request: InferenceRequest) -> Routed[InferenceResult]:
        started = time.perf_counter()
        routed = await self._router.answer(request)
        self._observe("inference", time.perf_counter() - started)
        return routed

    async def stream(self, request: InferenceRequest) -> Routed[OpenedStream]:
        """The stream, its end timed as the inference stage."""
        started = time.perf_counter()
        routed = await self._router.stream(request)
        opened = routed.result

        async def rest() -> AsyncIterator[Delta]:
            async for delta in opened.rest:
                yield delta
            self._observe("inference", time.perf_counter() - started)

        return dataclasses.replace(routed, result=OpenedStream(opened.first, rest()))

    async def analyze(
        self, source: MediaSource, request: AnalyzeRequest, received_at: float
    ) -> AnalyzeResponse:
        """`received_at` (perf_counter) is when the request arrived: total_s counts the upload."""
        loaded = await self.load(source, request.sampling)
        batch = loaded.batch
        extracted = time.perf_counter()
        routed = await self.answer(InferenceRequest.ask(request.prompt, batch, request.params))
        result = routed.result
        finished = time.perf_counter()
        return AnalyzeResponse(
            answer=result.text,
            model=result.model,
            backend=result.backend,
            fallback=routed.fallback,
            frames=FramesInfo(
                count=batch.count, timestamps=batch.timestamps_s, cached=batch.cached
            ),
            timings=Timings(
                download_s=round(loaded.download_s, 4),
                extract_s=round(loaded.extract_s, 4),
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
