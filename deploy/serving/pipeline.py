"""Where a request goes after the HTTP layer: extractor, then backend policy.

No HTTP here: the routes (api/service_routes.py: analyze; api/openai_routes.py: chat) parse
requests, and api/replies.py renders the `Answered` both get back. This module checks that
the model can see what was sent, asks the extractor for frames (routed to the replica that
holds the video: serving/affinity_router.py), hands the engine a reference to them through the
`BackendRouter` (vLLM, Ollama, fallback) and times each stage.

    upload (hashed as it streamed in), first sight ─► extractor.extract(bytes, digest, look_up)
    upload sent before by this ingress ─► extractor.lookup(digest)  hit: no video bytes sent
                                          └ miss ─► extractor.extract(bytes, digest)
    URL ─► extractor.extract_url(url)   the extractor downloads it (SSRF guard), not the ingress
    frame list ─► extractor.from_images(frames)

The extractor answers `StoredFrames`: metadata, and a reference to pixels in Ray's object store.
The ingress keeps the metadata; the engine replica reads the pixels: they never cross the
ingress.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ray.serve.handle import DeploymentHandle

from deploy.config.catalog import cannot_see
from deploy.config.settings import AppArgs, Backend
from deploy.core.errors import InvalidRequest, ServiceUnavailable
from deploy.core.messages import (
    AnalyzeRequest,
    Delta,
    FallbackInfo,
    InferenceRequest,
    InferenceResult,
    MediaKind,
    SamplingOptions,
    StoredFrames,
)
from deploy.core.speech import AudioMode, Heard
from deploy.serving.affinity_router import affinity, url_key
from deploy.serving.backends import BackendRouter, OpenedStream, Routed
from deploy.serving.handles import call_stage
from deploy.serving.metrics import StageMetrics
from deploy.serving.speech_stage import SpeechStage
from deploy.video.cache import cache_key, digest
from deploy.video.container import sniff

logger = logging.getLogger("ray.serve.vidserve.pipeline")

# Extraction of even long videos takes seconds; past this something is wrong.
EXTRACT_TIMEOUT_S = 120.0
# The uploads this ingress last sent to be extracted (their cache keys, about 200 bytes each):
# a repeat of one asks the extractor by digest first; any other goes with its bytes at once.
SENT_REMEMBERED = 4096
READY_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class MediaSource:
    """Where a request's video or image is: uploaded bytes, a URL, or a list of frame images.
    `kind` None: told by the bytes. `param` names it in errors (e.g. `messages[0].content[1]`).
    `digest`: `video.cache.digest(data)` when the HTTP layer hashed the bytes as they arrived."""

    param: str
    kind: MediaKind | None = None
    data: bytes | None = None
    url: str | None = None
    frames: list[bytes] | None = None
    digest: str | None = None
    file: str | None = None  # a job's video, read in place by the extractor (extract_file)


@dataclass(frozen=True)
class Loaded:
    media: StoredFrames  # its download_s: the time a URL took to download
    extract_s: float


@dataclass(frozen=True)
class Answered:
    """An answer and what went into it: who answered (and why not the primary), the frames it
    saw, and when the answer was asked for and came (perf_counter)."""

    result: InferenceResult
    fallback: FallbackInfo | None
    loaded: Loaded | None
    started_at: float
    finished_at: float
    heard: Heard | None = None  # the speech track of the frames' window (serving/speech_stage.py)

    @property
    def inference_s(self) -> float:
        """Wall seconds of the answer: routing, queueing and the engine."""
        return self.finished_at - self.started_at


class AnalyzePipeline:
    def __init__(
        self,
        extractor: DeploymentHandle[Any],
        router: BackendRouter,
        args: AppArgs,
        metrics: StageMetrics | None = None,
        speech: SpeechStage | None = None,
    ):
        self._extractor = extractor
        self.speech = speech
        self._router = router
        self._args = args
        self._metrics = metrics
        # Known once (it may read the model's config.json), not per request.
        self._primary_sees = args.vision_of(args.backends.primary)
        # The last readiness check, shared by every probe of its moment (see `ready`).
        self._readiness: asyncio.Task[dict[str, Any]] | None = None
        self._readiness_done_at = 0.0
        self._sent: OrderedDict[str, None] = OrderedDict()

    def check_can_see(self, kind: MediaKind) -> None:
        """A 422 before any decoding when the primary model is known to be text-only."""
        if self._primary_sees is False:
            primary = self._args.backends.primary
            raise cannot_see(
                self._args.model_of(primary),
                ollama=primary is Backend.OLLAMA,
                media="images" if kind is MediaKind.IMAGE else "video",
            )

    def _observe(self, stage: str, seconds: float) -> None:
        if self._metrics is not None:
            self._metrics.stage(stage, seconds)

    def uploaded(self, seconds: float) -> None:
        """The request body took `seconds` to arrive (the HTTP layer times it)."""
        self._observe("upload", seconds)

    async def load(self, source: MediaSource, sampling: SamplingOptions) -> Loaded:
        """Frames from an upload, a URL (the extractor downloads it) or a list of frames."""
        self.check_can_see(source.kind or MediaKind.VIDEO)
        started = time.perf_counter()
        if source.frames is not None:
            call = self._extractor.from_images.remote(source.frames, sampling, source.param)
            return self._loaded(await self._extract(call), started)
        if source.file is not None:
            call = self._extractor.extract_file.remote(source.file, sampling, source.param)
            return self._loaded(await self._extract(call), started)
        if source.data is None:
            handle = affinity(self._extractor, url_key(source.url or ""))
            call = handle.extract_url.remote(source.url or "", sampling, source.kind, source.param)
            stored = await self._extract(call)
            self._observe("download", stored.download_s)
            return self._loaded(stored, started)
        data = source.data
        kind = source.kind or sniff(data[:512]).kind or MediaKind.VIDEO
        content_digest = source.digest
        if content_digest is None:  # not hashed by the HTTP layer: hash it off the event loop
            content_digest = await asyncio.to_thread(digest, data)
        handle = affinity(self._extractor, content_digest)
        # Most videos are sent once: the bytes go at once, and the replica looks them up itself.
        first_sight = not self._sent_before(cache_key(content_digest, sampling, kind))
        if not first_sight:
            cached = await self._extract(handle.lookup.remote(content_digest, sampling, kind))
            if cached is not None:  # the video's replica has it: no bytes sent
                return self._loaded(cached, started)
        call = handle.extract.remote(
            data, content_digest, sampling, kind, source.param, look_up=first_sight
        )
        return self._loaded(await self._extract(call), started)

    def _sent_before(self, key: str) -> bool:
        """Whether this ingress sent the upload of `key` (its frame cache key) to be extracted
        lately; remembered now if not. A hint only: the extractor's cache decides."""
        if key in self._sent:
            self._sent.move_to_end(key)
            return True
        self._sent[key] = None
        if len(self._sent) > SENT_REMEMBERED:
            self._sent.popitem(last=False)
        return False

    @staticmethod
    async def _extract(call: Any) -> Any:
        return await call_stage(call, stage="extract", timeout_s=EXTRACT_TIMEOUT_S)

    def _loaded(self, stored: StoredFrames, started: float) -> Loaded:
        """The wall time here less the download is `extract_s`; the replica's own decoding time
        is in the metadata: the difference is queueing for (and travelling to) an extractor."""
        extract_s = time.perf_counter() - started - stored.download_s
        self._observe("extract", stored.meta.extract_s)
        self._observe("extract_queue", max(0.0, extract_s - stored.meta.extract_s))
        return Loaded(stored, extract_s)

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

    async def ask(
        self, request: InferenceRequest, loaded: Loaded | None = None, heard: Heard | None = None
    ) -> Answered:
        """`request` answered by the backend policy; `loaded`: the frames it carries, `heard`
        the speech in its prompt."""
        started = time.perf_counter()
        routed = await self.answer(request)
        finished = time.perf_counter()
        return Answered(routed.result, routed.fallback, loaded, started, finished, heard)

    async def load_and_hear(
        self, source: MediaSource, sampling: SamplingOptions, audio: AudioMode
    ) -> tuple[Loaded, Heard]:
        """The frames, then the speech of the same window. In turn, not at once: two calls of
        one request in flight to the FrameExtractor together were held back by Serve's router
        inside the ingress, 10 s each and the second never assigned (Ray 2.60; measured in
        tests/integration/test_speech.py), while in turn they take milliseconds."""
        if self.speech is None:
            if audio is AudioMode.ON:
                raise InvalidRequest(
                    "audio is 'on' but the speech track is off here (speech.enabled)",
                    param="audio",
                    code="speech_disabled",
                )
            return await self.load(source, sampling), Heard()
        loaded = await self.load(source, sampling)
        has_audio = loaded.media.meta.has_audio
        return loaded, await self.speech.hear(source, sampling, audio, has_audio)

    async def analyze(self, source: MediaSource, request: AnalyzeRequest) -> Answered:
        """The media of `source` extracted (and its speech heard), then `request`'s prompt
        asked about it."""
        loaded, heard = await self.load_and_hear(source, request.sampling, request.audio)
        prompt = heard.prompt(request.prompt, self._args.generation.max_prompt_chars)
        asked = InferenceRequest.ask(prompt, loaded.media, request.params)
        return await self.ask(asked, loaded, heard)

    async def ready(self) -> dict[str, Any]:
        """Each backend's state; raises ServiceUnavailable (naming them) when none can answer.

        One check at a time, its answer kept for `http.readiness_cache_s`: a flood of probes
        asks each backend once, not once per probe (which filled the replicas' slots, and
        refused probes turned a healthy pod not ready)."""
        loop = asyncio.get_running_loop()
        task = self._readiness
        fresh = task is not None and (
            not task.done()
            or loop.time() - self._readiness_done_at < self._args.http.readiness_cache_s
        )
        if task is None or not fresh:
            task = self._readiness = loop.create_task(self._check_ready())
            task.add_done_callback(self._readiness_finished)
        # Shielded: a probe that goes away does not cancel the check the others wait on.
        return await asyncio.shield(task)

    def _readiness_finished(self, task: asyncio.Task[dict[str, Any]]) -> None:
        self._readiness_done_at = asyncio.get_running_loop().time()
        if not task.cancelled():
            task.exception()  # retrieved, so an unawaited failure is not logged as lost

    async def _check_ready(self) -> dict[str, Any]:
        backends = await self._router.status(READY_TIMEOUT_S)
        if not any(state["ready"] for state in backends.values()):
            summary = "; ".join(f"{name}: {s['reason']}" for name, s in backends.items())
            raise ServiceUnavailable(
                f"no backend can answer yet ({summary})",
                code="not_ready",
                details={"backends": backends},
            )
        return backends
