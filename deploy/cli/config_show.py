"""`vidserve config`: the resolved configuration and where each value came from.

Origins, last wins: `default` (deploy/config/settings.py), `file <name>` (serve_config.yaml,
then the profile's overlay), `env <VAR>` (deploy/config/env.py), `argument --set`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from deploy.config.serve_config import APP_NAME, Profile, load_yaml, overlay_path
from deploy.config.settings import AppArgs, active_env_overrides

SECRET_KEYS = {"api_keys"}


def parse_sets(items: list[str]) -> dict[str, Any]:
    """`--set llm.max_model_len=4096` -> {"llm": {"max_model_len": 4096}} (values as YAML)."""
    tree: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ValueError(f"--set {item!r}: write KEY=VALUE, e.g. --set llm.max_model_len=4096")
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"--set {item!r}: {part} is already set to a value")  # noqa: TRY004
            node = child
        node[leaf] = yaml.safe_load(raw) if raw else ""
    return tree


def sets_overlay(sets: dict[str, Any]) -> dict[str, Any]:
    """--set values as a Serve config overlay on the vidserve application's args."""
    return {"applications": [{"name": APP_NAME, "args": sets}]} if sets else {}


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict) and tree:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: tree}


def _file_args(path: Path) -> dict[str, Any]:
    for app in load_yaml(path).get("applications", []):
        if app.get("name") == APP_NAME:
            args: dict[str, Any] = app.get("args") or {}
            return args
    return {}


def origins(
    config_file: Path, profile: Profile, sets: dict[str, Any], resolved: AppArgs
) -> list[tuple[str, Any, str]]:
    """(key, value, origin) for every setting of the application's args."""
    layers: list[tuple[str, dict[str, Any]]] = [
        (f"file {config_file.name}", _file_args(config_file))
    ]
    overlay = overlay_path(config_file, profile)
    if overlay is not None:
        layers.append((f"file {overlay.name}", _file_args(overlay)))
    from_files = {}
    for name, args in layers:
        from_files.update(dict.fromkeys(flatten(args), name))
    env = {f"{section}.{key}": var for (section, key), var in active_env_overrides().items()}
    from_sets = flatten(sets)
    rows = []
    for key, value in flatten(resolved.model_dump(mode="json")).items():
        if key in from_sets:
            origin = "argument --set"
        elif key in env:
            origin = f"env {env[key]}"
        else:
            origin = from_files.get(key, "default")
        secret = key.rsplit(".", 1)[-1] in SECRET_KEYS and value
        rows.append((key, f"<{len(value)} key(s)>" if secret else value, origin))
    return rows


def _show(value: Any) -> str:
    text: str = yaml.safe_dump(value, default_flow_style=True, width=10_000)
    return text.strip().removesuffix("...").strip()


def render(rows: list[tuple[str, Any, str]]) -> str:
    shown = [(key, _show(value), origin) for key, value, origin in rows]
    width_key = max(len(key) for key, _, _ in shown)
    width_value = min(60, max(len(value) for _, value, _ in shown))
    return "\n".join(f"{k.ljust(width_key)}  {v.ljust(width_value)}  {o}" for k, v, o in shown)
