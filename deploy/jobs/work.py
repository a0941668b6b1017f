"""The engine work of a job, behind one small interface: the video's duration, one chunk's
caption, one text generation (a merge or a chapter's title). `PipelineWork` does it on the
cluster: the chunk's frames from any FrameExtractor replica (Serve spreads the calls over all
of them), the caption and merges from the backend policy (vLLM, falling back to Ollama), exactly
as interactive requests are answered; with the speech track, each chunk's speech is heard after
its frames are extracted and goes into its caption's prompt (and is kept beside the caption)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ray.serve.handle import DeploymentHandle

from deploy.config.settings import JobsSettings
from deploy.core.messages import GenerationParams, InferenceRequest
from deploy.core.speech import AudioMode, Heard
from deploy.jobs.plan import chunk_sampling
from deploy.jobs.records import Span
from deploy.jobs.spec import DEFAULT_CAPTION_PROMPT, JobSpec
from deploy.serving.backends import BackendRouter
from deploy.serving.handles import call_stage
from deploy.serving.pipeline import MediaSource
from deploy.serving.speech_stage import SpeechStage

# A chunk's frames take seconds to decode; past this something is wrong.
EXTRACT_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Generated:
    text: str
    tokens: int  # the engine's count of the text's tokens
    backend: str = ""
    transcript: str | None = None  # what was said in the chunk (timed lines), when heard


class JobWork(Protocol):
    async def duration(self, source: str) -> float: ...

    async def caption(self, source: str, span: Span, spec: JobSpec) -> Generated: ...

    async def generate(
        self, prompt: str, max_tokens: int, json_schema: dict[str, Any] | None = None
    ) -> Generated: ...


class PipelineWork:
    def __init__(
        self,
        extractor: DeploymentHandle[Any],
        router: BackendRouter,
        settings: JobsSettings,
        speech: SpeechStage | None = None,
        max_prompt_chars: int = 32_000,
    ) -> None:
        self._extractor = extractor
        self._router = router
        self._settings = settings
        self._speech = speech
        self._max_prompt_chars = max_prompt_chars

    async def duration(self, source: str) -> float:
        call = self._extractor.probe_file.remote(source, "url")
        seconds: float = await call_stage(call, stage="extract", timeout_s=EXTRACT_TIMEOUT_S)
        return seconds

    async def caption(self, source: str, span: Span, spec: JobSpec) -> Generated:
        options = chunk_sampling(span, spec.frames_per_chunk)
        call = self._extractor.extract_file.remote(source, options, "url")
        frames = await call_stage(call, stage="extract", timeout_s=EXTRACT_TIMEOUT_S)
        heard = Heard()
        if self._speech is not None:  # then the chunk's speech (in turn: pipeline.load_and_hear)
            media = MediaSource(param="url", file=source)
            heard = await self._speech.hear(media, options, AudioMode.AUTO, frames.meta.has_audio)
        params = GenerationParams(
            max_tokens=self._settings.caption_max_tokens,
            temperature=0.0,
            json_schema=spec.json_schema,
        )
        prompt = heard.prompt(spec.prompt or DEFAULT_CAPTION_PROMPT, self._max_prompt_chars)
        routed = await self._router.answer(InferenceRequest.ask(prompt, frames, params))
        result = routed.result
        lines = "\n".join(heard.transcript.lines()) if heard.transcript else None
        return Generated(result.text, result.completion_tokens, result.backend, lines or None)

    async def generate(
        self, prompt: str, max_tokens: int, json_schema: dict[str, Any] | None = None
    ) -> Generated:
        params = GenerationParams(max_tokens=max_tokens, temperature=0.0, json_schema=json_schema)
        routed = await self._router.answer(InferenceRequest.ask(prompt, None, params))
        result = routed.result
        return Generated(result.text, result.completion_tokens, result.backend)
