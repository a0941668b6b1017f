"""The service's own routes: analyze (multipart), health, readiness and the OpenAPI document.
Like OpenAIRoutes and JobRoutes: a class whose methods are the handlers and whose `routes()` is
its table; deploy/ingress.py only composes the tables."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from deploy.api.analyze_form import parse_analyze_form
from deploy.api.openai_routes import BACKEND_HEADER
from deploy.api.replies import analyze_reply
from deploy.api.upload import read_multipart, read_source, with_field_hint
from deploy.config.settings import AppArgs
from deploy.core.errors import ServiceUnavailable, UnprocessableInput
from deploy.serving.pipeline import AnalyzePipeline


class ServiceRoutes:
    def __init__(
        self,
        pipeline: AnalyzePipeline,
        args: AppArgs,
        *,
        keys_enabled: bool,
        document: dict[str, Any],
    ) -> None:
        self._pipeline = pipeline
        self._args = args
        self._keys_enabled = keys_enabled
        self._document = document

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/video/analyze", self.analyze, methods=["POST"]),
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
            Route("/openapi.json", self.openapi, methods=["GET"]),
        ]

    async def analyze(self, request: Request) -> Response:
        args, pipeline = self._args, self._pipeline
        received_at = time.perf_counter()
        upload = await read_multipart(
            request, args.extraction.max_upload_bytes, args.http.spool_threshold_bytes
        )
        pipeline.uploaded(time.perf_counter() - received_at)
        try:
            parsed = parse_analyze_form(upload.form, args)
            source = await read_source(upload)
        finally:
            await upload.close()
        try:
            answered = await pipeline.analyze(source, parsed)
        except UnprocessableInput as exc:
            raise with_field_hint(exc) from None
        reply = analyze_reply(answered, received_at)
        return JSONResponse(reply.model_dump(), headers={BACKEND_HEADER: reply.backend})

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def readyz(self, request: Request) -> Response:
        # Backends' reasons name internal hosts and engine errors: only for a caller with a
        # key (or when keys are off); anyone else (a kubelet) gets the states alone.
        detail = not self._keys_enabled or getattr(request.state, "owner", None) is not None
        try:
            backends = await self._pipeline.ready()
        except ServiceUnavailable as exc:
            states = (exc.details or {}).get("backends", {})
            body = {"status": "not_ready", "reason": exc.message, **(exc.details or {})}
            if not detail:
                body = {"status": "not_ready", "backends": _states_only(states)}
            return JSONResponse(body, status_code=exc.status_code)
        primary = next(iter(backends))
        status = "ready" if backends[primary]["ready"] else "degraded"
        shown = backends if detail else _states_only(backends)
        return JSONResponse({"status": status, "backends": shown})

    async def openapi(self, request: Request) -> Response:
        root = request.scope.get("root_path") or ""
        return JSONResponse({**self._document, "servers": [{"url": root or "/"}]})


def _states_only(backends: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: {"ready": bool(state.get("ready"))} for name, state in backends.items()}
