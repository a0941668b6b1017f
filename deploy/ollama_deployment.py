"""The Ollama deployment: a thin replica around the official `ollama` async client.

Frames from the extractor go to Ollama's `/api/chat` as JPEG images, in order, with the question;
`response_format` becomes Ollama's `format`; `num_ctx`, `keep_alive` and `options` come from the
config, `temperature` and `num_predict` (max_tokens) from the request. The replica stays healthy
when the Ollama server is down: `ready()` says what is wrong, and requests fail fast with a 503
so that the policy in `backends.py` can decide.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import cv2
import httpx
import numpy as np
import ollama

from deploy.config.catalog import cannot_see, normalize_tag, ollama_model_vision
from deploy.config.settings import OllamaSettings
from deploy.core.errors import (
    BackendTimeout,
    EngineError,
    InvalidRequest,
    ServiceUnavailable,
)
from deploy.core.messages import (
    Delta,
    GenerationParams,
    InferenceRequest,
    InferenceResult,
    join_deltas,
)
from deploy.serving.health import HealthLog, Readiness

logger = logging.getLogger("ray.serve.vidserve.ollama")

BACKEND_NAME = "ollama"
PULL_LOG_EVERY_S = 5.0


def encode_jpeg(frames: np.ndarray, quality: int) -> list[bytes]:
    """RGB uint8 frames -> JPEG bytes, one per frame (the client base64-encodes them)."""
    images = []
    for frame in frames:
        ok, buffer = cv2.imencode(
            ".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
        )
        if not ok:
            raise EngineError("could not encode a frame as JPEG for Ollama")
        images.append(buffer.tobytes())
    return images


def chat_messages(request: InferenceRequest, images: list[bytes]) -> list[dict[str, Any]]:
    """The conversation for `/api/chat`. The frames go on the turn that holds the media; for a
    video, their timestamps go in its text, as Ollama sees only images."""
    messages: list[dict[str, Any]] = []
    media = request.media
    for turn in request.turns:
        message: dict[str, Any] = {"role": turn.role.value, "content": turn.text}
        if turn.media and media is not None:
            if media.meta.count > 1:
                times = ", ".join(f"{t:.1f}s" for t in media.meta.timestamps_s)
                message["content"] = (
                    f"The images are {media.meta.count} frames of one video, in order, taken at "
                    f"{times}.\n{turn.text}"
                )
            message["images"] = images
        messages.append(message)
    return messages


class OllamaServer:
    """Serve deployment `Ollama` (options in serve_config.yaml)."""

    async def __init__(self, settings: OllamaSettings, model: str) -> None:  # type: ignore[misc]
        self._settings = settings
        self._model = model
        self._client = ollama.AsyncClient(
            host=settings.host,
            timeout=httpx.Timeout(settings.request_timeout_s, connect=settings.connect_timeout_s),
        )
        self._health = HealthLog(f"Ollama at {settings.host} ({model})", logger)
        self._vision: bool | None = ollama_model_vision(model)
        # Asked of the server once (for tags the catalog does not know), not per request.
        self._vision_asked = self._vision is not None
        if settings.pull_on_start:
            await self._pull()

    async def ready(self) -> Readiness:
        """The model tag once the server answers and has the model; why not, before. Answered,
        not raised, and logged only when it changes (serving/health.py)."""
        try:
            return self._health.observe(Readiness(model=await self._check()))
        except ServiceUnavailable as exc:
            return self._health.observe(Readiness(error=exc))

    async def _check(self) -> str:
        try:
            listing = await self._client.list()
        except (ConnectionError, httpx.HTTPError) as exc:
            raise self._unreachable(exc) from None
        except ollama.ResponseError as exc:
            raise ServiceUnavailable(
                f"Ollama at {self._settings.host} answered /api/tags with an error: {exc}",
                code="ollama_unavailable",
            ) from None
        present = {normalize_tag(m.model or "") for m in listing.models}
        if normalize_tag(self._model) not in present:
            raise self._model_missing()
        await self._learn_vision()
        return self._model

    async def answer(self, request: InferenceRequest) -> InferenceResult:
        started = time.perf_counter()
        result = await join_deltas(self.answer_stream(request), started)
        if result is None:
            raise EngineError("Ollama finished without an answer", code="ollama_failed")
        return result

    async def answer_stream(self, request: InferenceRequest) -> AsyncIterator[Delta]:
        """The answer as Ollama streams it; the last delta has the finish reason and counts."""
        if request.media is not None:
            await self._learn_vision()
        if request.media is not None and self._vision is False:
            raise cannot_see(self._model, ollama=True)
        images: list[bytes] = []
        if request.media is not None:
            frames = await request.media.frames()
            images = await asyncio.to_thread(encode_jpeg, frames, self._settings.jpeg_quality)
        try:
            chunks = await self._client.chat(
                model=self._model,
                messages=chat_messages(request, images),
                format=request.params.format_schema(),
                options=self._options(request.params),
                keep_alive=self._settings.keep_alive,
                stream=True,
            )
            async for chunk in chunks:
                yield Delta(
                    text=chunk.message.content or "",
                    model=self._model,
                    backend=BACKEND_NAME,
                    finish_reason=(chunk.done_reason or "stop") if chunk.done else None,
                    prompt_tokens=int(chunk.prompt_eval_count or 0),
                    completion_tokens=int(chunk.eval_count or 0),
                )
        except (ConnectionError, httpx.ConnectError) as exc:
            raise self._unreachable(exc) from None
        except httpx.TimeoutException:
            raise BackendTimeout(
                f"Ollama did not answer within {self._settings.request_timeout_s:g}s",
                code="ollama_timeout",
            ) from None
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(
                f"the connection to Ollama failed: {type(exc).__name__}: {exc}",
                code="ollama_unavailable",
            ) from None
        except ollama.ResponseError as exc:
            raise self._response_error(exc) from None

    def _options(self, params: GenerationParams) -> dict[str, Any]:
        """Ollama's options: the config's, then what the request asks."""
        options: dict[str, Any] = {**self._settings.options, "num_predict": params.max_tokens}
        if self._settings.num_ctx is not None:
            options["num_ctx"] = self._settings.num_ctx
        for name in ("temperature", "top_p", "seed"):
            if (value := getattr(params, name)) is not None:
                options[name] = value
        if params.stop:
            options["stop"] = list(params.stop)
        return options

    async def _learn_vision(self) -> None:
        """Ollama's `/api/show` capabilities, for tags the catalog does not know; asked until
        the server answers once (an old server without capabilities leaves it unknown)."""
        if self._vision_asked:
            return
        try:
            shown = await self._client.show(self._model)
        except (ConnectionError, httpx.HTTPError, ollama.ResponseError):
            return
        self._vision_asked = True
        if shown.capabilities is not None:
            self._vision = "vision" in shown.capabilities

    async def _pull(self) -> None:
        logger.info("pulling %s from %s", self._model, self._settings.host)
        last_log = 0.0
        try:
            async for progress in await self._client.pull(self._model, stream=True):
                now = time.monotonic()
                done = progress.status == "success"
                if done or now - last_log >= PULL_LOG_EVERY_S:
                    last_log = now
                    logger.info("pull %s: %s", self._model, _progress_text(progress))
        except (ConnectionError, httpx.HTTPError) as exc:
            logger.warning("could not pull %s: %s", self._model, self._unreachable(exc).message)
        except ollama.ResponseError as exc:
            logger.warning("could not pull %s: %s", self._model, exc)

    def _unreachable(self, exc: Exception) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"Ollama is not reachable at {self._settings.host} ({type(exc).__name__}); start it "
            "with `ollama serve` or point OLLAMA_HOST / ollama.host at it",
            code="ollama_unreachable",
        )

    def _model_missing(self) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"Ollama at {self._settings.host} does not have the model {self._model!r}; run "
            f"`ollama pull {self._model}` or set ollama.pull_on_start: true",
            code="ollama_model_missing",
        )

    def _response_error(self, exc: ollama.ResponseError) -> Exception:
        if exc.status_code == 404:
            return self._model_missing()
        if 400 <= exc.status_code < 500:
            return InvalidRequest(f"Ollama refused the request: {exc.error}", code="ollama_refused")
        return EngineError(f"Ollama failed: {exc.error}", code="ollama_failed")


def _progress_text(progress: ollama.ProgressResponse) -> str:
    if progress.total and progress.completed is not None:
        share = 100.0 * progress.completed / progress.total
        return f"{progress.status} {share:.0f}% of {progress.total / 1e9:.2f} GB"
    return progress.status or ""
