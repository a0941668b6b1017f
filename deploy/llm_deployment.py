"""vLLM replicas, built on Ray Serve LLM.

Ray Serve LLM (`ray.serve.llm`) owns what is hard: the placement group for
`tensor_parallel_size`, engine start-up and shutdown, health checks and the engine's metrics
(`ray_vllm_*`). vidserve adds one method, `answer`, that feeds frames that arrive as numpy arrays
(through Ray's object store) straight into the engine as one video (or one image) input, without
re-encoding them. The frames come as a reference into the object store (`StoredFrames`): this
replica reads them there; they never passed through the ingress.

A second question about the same video reuses the engine's work: the media opens the user's
turn (before the question), so the prompt's tokens up to the question are a shared prefix for
prefix caching, and the item carries the extractor's `frames_id` as its multimodal UUID, so the
multimodal processor cache (`mm_processor_cache_gb`) and the prefix cache know the video without
hashing its pixels.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ray.serve.deployment import Application
from ray.serve.llm import LLMConfig, LLMServer, build_llm_deployment

from deploy.config.catalog import cannot_see
from deploy.config.settings import Accelerator, LLMSettings
from deploy.core.errors import (
    EngineError,
    Failure,
    InvalidRequest,
    ServiceUnavailable,
)
from deploy.core.messages import (
    Delta,
    FrameMeta,
    InferenceRequest,
    InferenceResult,
    MediaKind,
    join_deltas,
)
from deploy.models.startup_errors import ModelStartError, explain
from deploy.serving.health import HealthLog, Readiness
from deploy.serving.serve_logs import drop_dead_serve_handlers, serve_log_handlers_kept

if TYPE_CHECKING:
    import numpy as np
    from vllm.sampling_params import SamplingParams

logger = logging.getLogger("ray.serve.vidserve.llm")

BACKEND_NAME = "vllm"


def chat_messages(request: InferenceRequest) -> list[dict[str, Any]]:
    """The conversation the model's own template renders; the media part opens its turn."""
    messages: list[dict[str, Any]] = []
    for turn in request.turns:
        if turn.media and request.media is not None:
            content: list[dict[str, Any]] = [{"type": request.media.meta.kind.value}]
            content.append({"type": "text", "text": turn.text})
            messages.append({"role": turn.role.value, "content": content})
        else:
            messages.append({"role": turn.role.value, "content": turn.text})
    return messages


def multi_modal_data(meta: FrameMeta, frames: np.ndarray) -> dict[str, Any]:
    """vLLM's `multi_modal_data`: frames with the metadata the Qwen video processor needs."""
    if meta.kind is MediaKind.IMAGE:
        return {"image": frames[0]}
    return {"video": (frames, meta.vllm_video_metadata())}


def engine_inputs(
    prompt: str, meta: FrameMeta | None, frames: np.ndarray | None, frames_id: str = ""
) -> dict[str, Any]:
    """The engine's prompt dict; `frames_id` (when known) names the media item for vLLM's
    multimodal caches."""
    inputs: dict[str, Any] = {"prompt": prompt}
    if meta is not None and frames is not None:
        inputs["multi_modal_data"] = multi_modal_data(meta, frames)
        if frames_id:
            inputs["multi_modal_uuids"] = {meta.kind.value: [frames_id]}
    return inputs


def sampling_params(request: InferenceRequest) -> SamplingParams:
    from vllm.sampling_params import RequestOutputKind, SamplingParams, StructuredOutputsParams

    params = request.params
    # DELTA: each output carries only the new text, for streaming and for joining.
    kwargs: dict[str, Any] = {
        "max_tokens": params.max_tokens,
        "output_kind": RequestOutputKind.DELTA,
    }
    for name in ("temperature", "top_p", "seed"):
        if (value := getattr(params, name)) is not None:
            kwargs[name] = value
    if params.stop:
        kwargs["stop"] = list(params.stop)
    if params.choice:
        kwargs["structured_outputs"] = StructuredOutputsParams(choice=list(params.choice))
    elif params.json_schema is not None:
        kwargs["structured_outputs"] = StructuredOutputsParams(json=params.json_schema)
    return SamplingParams(**kwargs)


class VideoLLMServer(LLMServer):
    """Ray Serve LLM's `LLMServer`, plus `answer` for frames that arrive as arrays."""

    _health: HealthLog | None = None  # made on the first probe (LLMServer owns __init__)

    async def start(self) -> None:
        """Start the engine; a failure with a known cause is re-raised saying what to change
        (deploy/models/startup_errors.py): that message is what `vidserve run` and `serve status`
        show."""
        try:
            # The engine sets vLLM's logging up, which closes Serve's handler of this replica
            # (a leak: serving/serve_logs.py); kept open here.
            with serve_log_handlers_kept():
                await super().start()
        except Exception as exc:
            config = self._llm_config
            source = getattr(config.model_loading_config, "model_source", None) or config.model_id
            message = explain(exc, str(source), dict(config.engine_kwargs))
            if message is None:
                raise
            logger.exception("the vLLM engine did not start: %s", message)
            raise ModelStartError(message) from exc
        finally:
            drop_dead_serve_handlers()  # closed before we could keep it: at least no leak

    async def ready(self) -> Readiness:
        """The served model id, or why the engine cannot answer (answered, not raised, and
        logged only when it changes: serving/health.py)."""
        if self._health is None:
            self._health = HealthLog(f"the vLLM engine ({self._llm_config.model_id})", logger)
        health = self._health
        try:
            await self.check_health()
        except Exception as exc:  # noqa: BLE001 - any engine failure means "not ready", said
            error = ServiceUnavailable(
                f"the vLLM engine is not healthy: {exc}", code="vllm_unavailable"
            )
            return health.observe(Readiness(error=error))
        return health.observe(Readiness(model=self._llm_config.model_id))

    async def answer(self, request: InferenceRequest) -> InferenceResult:
        started = time.perf_counter()
        result = await join_deltas(self.answer_stream(request), started)
        if result is None:
            raise EngineError("the engine finished without producing an output")
        return result

    async def answer_stream(self, request: InferenceRequest) -> AsyncIterator[Delta]:
        """The answer as it is generated; the last delta has the finish reason and counts."""
        from vllm.exceptions import QueueOverflowError, VLLMClientError, VLLMServerError

        client = self._vllm_client()
        if request.media is not None and not client.model_config.is_multimodal_model:
            # The engine's own answer, for a model the catalog and its config did not settle.
            raise cannot_see(self._llm_config.model_id, ollama=False)
        prompt = client.get_tokenizer().apply_chat_template(
            chat_messages(request), tokenize=False, add_generation_prompt=True
        )
        media = request.media
        frames = await media.frames() if media is not None else None
        inputs = engine_inputs(
            prompt,
            media.meta if media else None,
            frames,
            media.frames_id if media else "",
        )
        request_id = request.request_id or uuid.uuid4().hex
        model = self._llm_config.model_id
        prompt_tokens = completion_tokens = 0
        try:
            async for output in client.generate(inputs, sampling_params(request), request_id):
                prompt_tokens = max(prompt_tokens, len(output.prompt_token_ids or []))
                if not output.outputs:
                    continue
                completion = output.outputs[0]
                completion_tokens += len(completion.token_ids)
                yield Delta(
                    text=completion.text,
                    model=model,
                    backend=BACKEND_NAME,
                    finish_reason=completion.finish_reason if output.finished else None,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens,
                )
        except (VLLMClientError, ValueError, OverflowError) as exc:  # the request's fault
            raise InvalidRequest(str(exc), code="invalid_for_model") from None
        except QueueOverflowError as exc:
            raise ServiceUnavailable(
                f"the vLLM engine's queue is full: {exc}",
                code="vllm_overloaded",
                failure=Failure.OVERLOADED,
            ) from None
        except VLLMServerError as exc:  # EngineDeadError, EngineGenerateError, ...
            raise EngineError(
                f"the vLLM engine failed: {type(exc).__name__}: {exc}", code="vllm_engine_error"
            ) from None

    def _vllm_client(self) -> Any:
        # Ray Serve LLM keeps vLLM's AsyncLLM on its engine wrapper; no public accessor exists.
        client = getattr(self.engine, "_engine_client", None)
        if client is None:
            raise EngineError("the vLLM engine is not running on this replica")
        return client


def llm_config(settings: LLMSettings, accelerator: Accelerator) -> LLMConfig:
    """Ray Serve LLM's config for our settings on the chosen accelerator."""
    kwargs: dict[str, Any] = {}
    if accelerator is Accelerator.CPU:
        kwargs["accelerator_config"] = {"kind": "cpu"}
    return LLMConfig(
        model_loading_config={"model_id": settings.served_model_id, "model_source": settings.model},
        engine_kwargs=settings.vllm_engine_kwargs(),
        log_engine_metrics=True,
        **kwargs,
    )


def build_vllm_deployment(
    settings: LLMSettings, accelerator: Accelerator, name: str
) -> Application:
    """The vLLM deployment. Its replica count and autoscaling come from serve_config.yaml
    (`deployments: - name: VLLM`), its resources from `tensor_parallel_size`."""
    return build_llm_deployment(
        llm_config(settings, accelerator),
        deployment_cls=VideoLLMServer,
        override_serve_options={"name": name},
    )
