"""The OpenAI-compatible API's routes: `POST /v1/chat/completions` and `GET /v1/models`.

Responses are built from the `openai` library's own types (ChatCompletion, ChatCompletionChunk,
Model), so their shape is OpenAI's by construction; vidserve's extra fields (`vidserve`,
`backend`) ride along as the types' allowed extras.

    JSON body (size-capped: api/body.py) ─► parse_chat (openai_protocol.py) ─► ChatPlan
        ─► AnalyzePipeline.load (extract) ─► .answer or .stream (backend policy)
        ─► chat.completion JSON, or server-sent `chat.completion.chunk`s ending `data: [DONE]`

Errors have OpenAI's shape and status codes, so the SDK raises its own exception types.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from openai.types import CompletionUsage, Model
from openai.types.chat import ChatCompletionChunk
from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
from openai.types.chat.chat_completion_chunk import ChoiceDelta
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from deploy.api.body import read_capped, require_content_type
from deploy.api.error_body import error_body
from deploy.api.jobs_protocol import owner_of
from deploy.api.openai_protocol import ChatPlan, parse_chat
from deploy.api.replies import (
    as_json,
    chat_completion,
    chunk_choice,
    extension,
    finish_reason_of,
    usage_of,
)
from deploy.config.settings import AppArgs
from deploy.core.errors import InvalidRequest, PayloadTooLarge, VidserveError
from deploy.core.messages import Delta, InferenceRequest, Turn
from deploy.core.speech import Heard
from deploy.jobs.ask import job_context
from deploy.jobs.library import Library
from deploy.jobs.library_ask import Source, library_context, recent_context
from deploy.jobs.store import Store
from deploy.serving.pipeline import AnalyzePipeline, Loaded

BACKEND_HEADER = "X-Vidserve-Backend"


class OpenAIRoutes:
    def __init__(
        self,
        pipeline: AnalyzePipeline,
        args: AppArgs,
        jobs_store: Store | None = None,
        library: Library | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._args = args
        self._jobs_store = jobs_store
        self._library = library
        self._served = [args.model_of(b) for b in args.backends.order]
        self._backend_of = {args.model_of(b): b.value for b in args.backends.order}
        self._created = int(time.time())
        self._max_body = args.max_json_body_bytes

    @property
    def served(self) -> list[str]:
        return list(self._served)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
            Route("/v1/models", self.models, methods=["GET"]),
        ]

    async def models(self, request: Request) -> Response:
        data = [
            as_json(Model(id=model, object="model", created=self._created, owned_by="vidserve"))
            | {"backend": self._backend_of[model]}  # vidserve's extra field
            for model in self._served
        ]
        return JSONResponse({"object": "list", "data": data})

    async def chat_completions(self, request: Request) -> Response:
        received_at = time.perf_counter()
        body = await self._read_body(request)
        self._pipeline.uploaded(time.perf_counter() - received_at)
        plan = await asyncio.to_thread(parse_chat, body, self._args, self._served)
        if plan.job_id is not None:
            plan = await self._about_job(plan, owner_of(request))
        sources: list[Source] = []
        if plan.job_ids or plan.search is not None:
            plan, sources = await self._about_library(plan, owner_of(request))
        if plan.stream_id is not None:
            plan, sources = await self._about_stream(plan, owner_of(request))
        loaded = heard = None
        turns = plan.turns
        if plan.media is not None:
            loaded, heard = await self._pipeline.load_and_hear(
                plan.media, plan.sampling, plan.audio
            )
            turns = _with_speech(turns, heard, self._args.generation.max_prompt_chars)
        inference = InferenceRequest(
            turns=turns,
            media=loaded.media if loaded else None,
            params=plan.params,
            request_id=f"chatcmpl-{uuid.uuid4().hex}",
        )
        if plan.stream:
            return await self._stream(plan, inference, loaded, heard, sources)
        answered = await self._pipeline.ask(inference, loaded, heard)
        body_out = chat_completion(answered, inference.request_id, int(time.time()), received_at)
        if sources:
            body_out["vidserve"]["sources"] = [source.as_dict() for source in sources]
        return JSONResponse(body_out, headers={BACKEND_HEADER: answered.result.backend})

    async def _about_job(self, plan: ChatPlan, owner: str) -> ChatPlan:
        """The question is about a job's video: its captions as context, the frames of the
        chunk that best matches the question as the media (deploy/jobs/ask.py)."""
        if self._jobs_store is None:
            raise InvalidRequest(
                "video_options.job_id: jobs are not enabled here", param="video_options.job_id"
            )
        question = plan.turns[-1].text
        context = await asyncio.to_thread(
            job_context,
            self._jobs_store,
            plan.job_id or "",
            owner,
            question,
            self._args.generation.max_prompt_chars // 2,
        )
        asked = dataclasses.replace(plan.turns[-1], media=True)
        return dataclasses.replace(
            plan,
            turns=(context.captions, *plan.turns[:-1], asked),
            media=context.media,
            sampling=context.sampling,
        )

    async def _about_library(self, plan: ChatPlan, owner: str) -> tuple[ChatPlan, list[Source]]:
        """The question is about several analyzed videos: the best-matching chunks of each as
        context, to be cited (deploy/jobs/library_ask.py)."""
        if self._jobs_store is None or self._library is None:
            raise InvalidRequest(
                "video_options.job_ids / search: jobs are not enabled here",
                param="video_options.job_ids",
            )
        found = await library_context(
            self._jobs_store,
            self._library,
            self._args.search,
            owner,
            plan.turns[-1].text,
            job_ids=plan.job_ids,
            search=plan.search or None,
            max_chars=self._args.generation.max_prompt_chars // 2,
        )
        turns = (found.context, *plan.turns)
        return dataclasses.replace(plan, turns=turns), found.sources

    async def _about_stream(self, plan: ChatPlan, owner: str) -> tuple[ChatPlan, list[Source]]:
        """The question is about a live stream's last minutes: its windows of them as context,
        to be cited (deploy/jobs/library_ask.py recent_context)."""
        if self._jobs_store is None:
            raise InvalidRequest(
                "video_options.stream_id: streams are not enabled here",
                param="video_options.stream_id",
            )
        found = await recent_context(
            self._jobs_store,
            owner,
            plan.stream_id or "",
            last_s=plan.last_s,
            max_chars=self._args.generation.max_prompt_chars // 2,
        )
        return dataclasses.replace(plan, turns=(found.context, *plan.turns)), found.sources

    async def _stream(
        self,
        plan: ChatPlan,
        inference: InferenceRequest,
        loaded: Loaded | None,
        heard: Heard | None,
        sources: list[Source],
    ) -> Response:
        # The policy (fallback) applies until the first piece arrives, so errors before it are
        # still plain HTTP errors; after it, an error ends the stream as an `error` event.
        routed = await self._pipeline.stream(inference)
        opened = routed.result
        first = opened.first
        created = int(time.time())
        extra = extension(first.backend, routed.fallback, loaded, heard)
        if sources:
            extra["sources"] = [source.as_dict() for source in sources]

        def event(
            choices: list[ChunkChoice],
            usage: CompletionUsage | None = None,
            vidserve: dict[str, Any] | None = None,
        ) -> str:
            chunk = ChatCompletionChunk(
                id=inference.request_id,
                object="chat.completion.chunk",
                created=created,
                model=first.model,
                choices=choices,
            )
            if plan.include_usage:  # OpenAI's shape: null on every chunk but the last
                chunk.usage = usage
            body = as_json(chunk) | ({"vidserve": vidserve} if vidserve is not None else {})
            return f"data: {json.dumps(body)}\n\n"

        async def events() -> AsyncIterator[str]:
            last: Delta = first
            yield event([chunk_choice(ChoiceDelta(role="assistant", content=first.text))])
            try:
                async for delta in opened.rest:
                    last = delta
                    if delta.text:
                        yield event([chunk_choice(ChoiceDelta(content=delta.text))])
            except VidserveError as exc:
                yield f"data: {json.dumps(error_body(exc))}\n\n"
                yield "data: [DONE]\n\n"
                return
            finish = finish_reason_of(last.finish_reason)
            yield event([chunk_choice(ChoiceDelta(), finish)], vidserve=extra)
            if plan.include_usage:
                yield event([], usage=usage_of(last.prompt_tokens, last.completion_tokens))
            yield "data: [DONE]\n\n"

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={
                BACKEND_HEADER: first.backend,
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            },
        )

    async def _read_body(self, request: Request) -> bytes:
        require_content_type(request, "application/json", "an application/json body")
        return await read_capped(request, self._max_body, self._too_large)

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"the request body exceeds {self._max_body} bytes (extraction.max_upload_bytes "
            "as base64, plus the JSON); send the video by URL instead"
        )


def _with_speech(turns: tuple[Turn, ...], heard: Heard, max_chars: int) -> tuple[Turn, ...]:
    """The turn that carries the media, with the speech of its window before its text."""
    return tuple(
        dataclasses.replace(turn, text=heard.prompt(turn.text, max_chars)) if turn.media else turn
        for turn in turns
    )
