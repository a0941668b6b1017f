"""serve_config.yaml and its profile overlays: load, merge, validate.

An overlay holds only what differs from the base file. Mappings merge key by key; lists whose items
all carry a `name` (applications, deployments) merge item by item on that name; anything else is
replaced.
"""

from __future__ import annotations

import copy
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from deploy.config import env
from deploy.config.settings import AppArgs

REPO_ROOT = Path(__file__).resolve().parents[2]
BASE_CONFIG = REPO_ROOT / "serve_config.yaml"
APP_NAME = "vidserve"
IMPORT_PATH = "deploy.serve_app:build_app"


class Profile(StrEnum):
    GPU = "gpu"  # vLLM on NVIDIA GPUs, Ollama as fallback (serve_config.yaml itself)
    CPU = "cpu"  # vLLM's CPU build, small limits (serve_config.cpu.yaml)
    OLLAMA = "ollama"  # laptops: Ollama alone, no vLLM installed (serve_config.ollama.yaml)


def overlay_path(base: Path, profile: Profile) -> Path | None:
    """`serve_config.<profile>.yaml` beside `serve_config.yaml`; the GPU profile is the base."""
    if profile is Profile.GPU:
        return None
    return base.with_name(f"{base.stem}.{profile.value}{base.suffix}")


def _named_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(i, dict) and "name" in i for i in value)


def merge(base: Any, overlay: Any) -> Any:
    """Deep-merge `overlay` onto `base` (neither is modified)."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        merged = copy.deepcopy(base)
        for key, value in overlay.items():
            merged[key] = merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    if _named_list(base) and _named_list(overlay):
        by_name = {item["name"]: item for item in base}
        result = [merge(item, _find(overlay, item["name"]) or {}) for item in base]
        result += [copy.deepcopy(item) for item in overlay if item["name"] not in by_name]
        return result
    return copy.deepcopy(overlay)


def _find(items: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((item for item in items if item["name"] == name), None)


def load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"serve config {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"serve config {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"serve config {path} must be a mapping at the top level")  # noqa: TRY004
    return data


def load_config(
    base: Path = BASE_CONFIG,
    profile: Profile = Profile.GPU,
    extra_overlays: tuple[dict[str, Any], ...] = (),
) -> dict[str, Any]:
    """The merged Serve config for `profile`, validated by Ray's schema and by AppArgs.

    Deployment settings of backends the policy does not use (e.g. `VLLM` with
    `primary: ollama, fallback: none`) are dropped: Serve refuses settings for deployments
    an application does not have."""
    config = load_yaml(base)
    overlay = overlay_path(base, profile)
    if overlay is not None:
        config = merge(config, load_yaml(overlay))
    for extra in extra_overlays:
        config = merge(config, extra)
    for app in config.get("applications", []):
        if app.get("import_path") == IMPORT_PATH:
            _drop_unused_deployments(app)
    validate(config)
    return config


def _drop_unused_deployments(app: dict[str, Any]) -> None:
    from deploy.config.deployments import deployment_names

    used = set(deployment_names(AppArgs.from_args(copy.deepcopy(app.get("args") or {}))))
    app["deployments"] = [d for d in app.get("deployments", []) if d.get("name") in used]


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def bind_safely(config: dict[str, Any]) -> str | None:
    """With no API key configured anywhere and auth.allow_open_network off, a non-loopback
    `http_options.host` becomes 127.0.0.1 (in `config`); the note saying so, or None."""
    host = str((config.get("http_options") or {}).get("host", "127.0.0.1"))
    if host in LOOPBACK_HOSTS:
        return None
    auth = AppArgs.from_args(copy.deepcopy(app_args(config))).auth
    has_keys = bool(auth.api_keys or env.api_keys() or auth.api_keys_file)
    if has_keys or auth.allow_open_network:
        return None
    config["http_options"]["host"] = "127.0.0.1"
    return (
        f"no API key is configured, so the API listens on 127.0.0.1 instead of {host} (every "
        "job, caption and search result would be open to the network): set VIDSERVE_API_KEYS "
        "(or auth.api_keys_file) to serve on the network, or auth.allow_open_network: true to "
        "serve it open on purpose"
    )


def app_args(config: dict[str, Any], name: str = APP_NAME) -> dict[str, Any]:
    app = _find(config.get("applications", []), name)
    if app is None:
        raise ValueError(f"the serve config has no application named {name!r}")
    args: dict[str, Any] = app.setdefault("args", {})
    return args


def validate(config: dict[str, Any]) -> None:
    """Ray's own Serve config schema, then our AppArgs for each vidserve application."""
    from pydantic import ValidationError
    from ray.serve.schema import ServeDeploySchema

    try:
        ServeDeploySchema.model_validate(config)
    except ValidationError as exc:
        raise ValueError(f"the serve config is not valid for Ray Serve:\n{exc}") from None
    _no_unknown_keys(config)
    for app in config.get("applications", []):
        for deployment in app.get("deployments", []):
            _validate_autoscaling(app.get("name"), deployment)
        if app.get("import_path") == IMPORT_PATH:
            _validate_app(app)


def _validate_autoscaling(app: str | None, deployment: dict[str, Any]) -> None:
    """Ray's schema takes `autoscaling_config` as a plain mapping and checks it only when the
    deployment is created; check it now, with Ray's own AutoscalingConfig."""
    from pydantic import ValidationError
    from ray.serve.config import AutoscalingConfig

    scaling = deployment.get("autoscaling_config")
    if scaling is None:
        return
    where = f"application {app!r}, deployment {deployment.get('name')!r}"
    _known(scaling, AutoscalingConfig.model_fields, f"autoscaling_config of {where}")
    try:
        AutoscalingConfig.model_validate(scaling)
    except ValidationError as exc:
        raise ValueError(f"autoscaling_config of {where} is not valid:\n{exc}") from None


def _validate_app(app: dict[str, Any]) -> None:
    from deploy.config.deployments import deployment_names

    args = AppArgs.model_validate(copy.deepcopy(app.get("args") or {}))
    known = deployment_names(args)
    for deployment in app.get("deployments", []):
        if deployment.get("name") not in known:
            raise ValueError(
                f"application {app.get('name')!r} has settings for deployment "
                f"{deployment.get('name')!r}, which it does not deploy with backends "
                f"{'/'.join(b.value for b in args.backends.order)}; its deployments are "
                f"{', '.join(known)}"
            )


def _no_unknown_keys(config: dict[str, Any]) -> None:
    """Ray's schema ignores unknown keys; a typo there would silently do nothing."""
    from ray.serve.schema import DeploymentSchema, ServeApplicationSchema, ServeDeploySchema

    _known(config, ServeDeploySchema.model_fields, "the config")
    for app in config.get("applications", []):
        _known(app, ServeApplicationSchema.model_fields, f"application {app.get('name')!r}")
        for deployment in app.get("deployments", []):
            where = f"deployment {deployment.get('name')!r}"
            _known(deployment, DeploymentSchema.model_fields, where)


def _known(section: dict[str, Any], fields: dict[str, Any], where: str) -> None:
    unknown = sorted(set(section) - set(fields))
    if unknown:
        raise ValueError(
            f"the serve config is not valid for Ray Serve: {where} has unknown key(s) "
            f"{', '.join(unknown)}; valid keys are {', '.join(sorted(fields))}"
        )
