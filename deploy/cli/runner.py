"""Run the app on a local Ray: start Ray, deploy a merged Serve config, wait with progress, stop.

Used by `vidserve run` and by the integration tests, so both start the app the same way as
`serve run serve_config.yaml` does (the config's `deployments:` overrides applied by Serve).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

import ray
from ray import serve
from ray.serve.schema import ApplicationStatus, ServeDeploySchema

from deploy.api.proxy_errors import CALLBACK as PROXY_CALLBACK
from deploy.config import env
from deploy.config.serve_config import APP_NAME
from deploy.models.startup_errors import ModelStartError

logger = logging.getLogger("ray.serve.vidserve.runner")

Progress = Callable[[str], None]


def start_local_ray(num_cpus: int | None = None, metrics_port: int | None = None) -> None:
    """A Ray of our own on this machine (never touches other Ray clusters), exporting its
    metrics for Prometheus on `metrics_port` (default VIDSERVE_METRICS_PORT, 8080)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Serve's HTTP proxy (started by this Ray, inheriting this environment) answers its own
    # errors in vidserve's JSON shape (api/proxy_errors.py).
    os.environ.setdefault("RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH", PROXY_CALLBACK)
    cores = os.cpu_count() or 2
    # Declare more logical CPUs than cores: replicas asking for 1 CPU must still be scheduled.
    declared = num_cpus or env.ray_num_cpus() or max(8, cores)
    ray.init(
        address="local",
        num_cpus=declared,
        include_dashboard=False,
        log_to_driver=True,
        _metrics_export_port=metrics_port or env.metrics_port(),
    )


def deploy(config: dict[str, Any]) -> None:
    """Submit the config to Serve, as `serve run CONFIG` does; returns without waiting."""
    schema = ServeDeploySchema.model_validate(config)
    serve.start(http_options=schema.http_options.model_dump(), proxy_location=schema.proxy_location)
    # The public serve.run() takes an Application, not a config with `deployments:` overrides;
    # this is the call `serve run config.yaml` makes.
    from ray.serve.context import _get_global_client

    client = _get_global_client()
    if client is None:
        raise RuntimeError("Serve did not start: no controller client")
    client.deploy_apps(schema)


def wait_until_running(
    timeout_s: float, progress: Progress | None = None, app: str = APP_NAME
) -> None:
    """Poll Serve until the app runs; report each change of deployment status."""
    deadline = time.monotonic() + timeout_s
    last = ""
    started = time.monotonic()
    while time.monotonic() < deadline:
        status = serve.status().applications.get(app)
        if status is not None:
            line = _describe(status)
            if line != last and progress is not None:
                progress(f"[{time.monotonic() - started:5.0f}s] {line}")
            last = line
            if status.status == ApplicationStatus.RUNNING:
                return
            if status.status == ApplicationStatus.DEPLOY_FAILED:
                raise DeployFailed(_failure(status) or status.message or line)
        time.sleep(1.0)
    raise TimeoutError(f"the app was not running after {timeout_s:.0f}s: {last}")


class DeployFailed(RuntimeError):
    """The app did not deploy; `reason` is what went wrong (a replica's start-up error)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the app failed to deploy: {reason}")
        self.reason = reason


def _failure(status: Any) -> str | None:
    """The failed deployments' errors; of an explained one, only the explanation."""
    reasons = []
    for name, deployment in sorted(status.deployments.items()):
        message = deployment.message or ""
        explained = ModelStartError.explanation_in(message)
        if explained is not None:
            reasons.append(f"{name}: {explained}")
        elif deployment.status.value in {"DEPLOY_FAILED", "UNHEALTHY"} and message:
            reasons.append(f"{name}: {message}")
    return "\n".join(reasons) or None


def _describe(status: Any) -> str:
    parts = [f"app {status.status.value}"]
    for name, deployment in sorted(status.deployments.items()):
        parts.append(f"{name} {deployment.status.value}")
    return ", ".join(parts)


def shutdown() -> None:
    """Stop Serve and the local Ray this process started (only ours: never `ray stop`)."""
    if ray.is_initialized():
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
