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

from deploy.config import AppArgs

REPO_ROOT = Path(__file__).resolve().parent.parent
BASE_CONFIG = REPO_ROOT / "serve_config.yaml"
APP_NAME = "vidserve"


class Profile(StrEnum):
    GPU = "gpu"
    CPU = "cpu"


def overlay_path(base: Path, profile: Profile) -> Path | None:
    """`serve_config.cpu.yaml` beside `serve_config.yaml`; the GPU profile is the base itself."""
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
    """The merged Serve config for `profile`, validated by Ray's schema and by AppArgs."""
    config = load_yaml(base)
    overlay = overlay_path(base, profile)
    if overlay is not None:
        config = merge(config, load_yaml(overlay))
    for extra in extra_overlays:
        config = merge(config, extra)
    validate(config)
    return config


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
    AppArgs.model_validate(app_args(copy.deepcopy(config)))


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
