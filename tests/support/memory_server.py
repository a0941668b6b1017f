"""An ingress (the real Starlette app) served by uvicorn in its own process, for measuring its
memory: `python -m tests.support.memory_server PORT ARGS_JSON`. Its extractor stand-in keeps each
request for a second (as a decode would), then refuses it; nothing else runs in the process."""

from __future__ import annotations

import asyncio
import json
import sys

import uvicorn

from deploy.api.auth import ApiKeys
from deploy.config.settings import AppArgs
from deploy.core.errors import UnprocessableInput
from deploy.ingress import build_http_app
from deploy.serving.backends import BackendRouter
from deploy.serving.pipeline import AnalyzePipeline
from tests.support.handles import AnsweringHandle
from tests.support.recorders import MetricsRecorder


async def _held() -> None:
    """A decode's second, then a refusal (the bytes were held meanwhile)."""
    await asyncio.sleep(1.0)
    raise UnprocessableInput("refused by the stand-in", code="corrupt_media")


class _NoBackend:
    name = "ollama"

    async def ready(self, timeout_s: float) -> str:
        return "m"


def main() -> None:
    port, raw = int(sys.argv[1]), json.loads(sys.argv[2])
    args = AppArgs.model_validate(raw)
    router = BackendRouter([_NoBackend()], args.backends.circuit_breaker)  # type: ignore[list-item]
    pipeline = AnalyzePipeline(AnsweringHandle(_held), router, args)  # type: ignore[arg-type]
    app = build_http_app(pipeline, args, ApiKeys([]), MetricsRecorder())
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
