"""The names of the app's Serve deployments, and which of them a policy uses: serve_config.yaml
may set options only for these (config/serve_config.py checks it; serve_app.py builds them)."""

from __future__ import annotations

from deploy.config.settings import AppArgs, Backend

INGRESS_NAME = "Ingress"
EXTRACTOR_NAME = "FrameExtractor"
VLLM_DEPLOYMENT_NAME = "VLLM"
OLLAMA_DEPLOYMENT_NAME = "Ollama"
TRANSCRIBER_NAME = "Transcriber"
EMBEDDER_NAME = "Embedder"
STREAM_INGEST_NAME = "StreamIngest"
BACKEND_DEPLOYMENTS = {
    Backend.VLLM: VLLM_DEPLOYMENT_NAME,
    Backend.OLLAMA: OLLAMA_DEPLOYMENT_NAME,
}


def deployment_names(args: AppArgs) -> list[str]:
    """The deployments `build_app` creates for these args."""
    return [
        INGRESS_NAME,
        EXTRACTOR_NAME,
        *(BACKEND_DEPLOYMENTS[backend] for backend in args.backends.order),
        *([TRANSCRIBER_NAME] if args.speech.enabled else []),
        *([EMBEDDER_NAME] if args.search.semantic else []),
        *([STREAM_INGEST_NAME] if args.streams.enabled else []),
    ]
