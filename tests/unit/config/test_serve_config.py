from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.config.deployments import EMBEDDER_NAME as EMBEDDER
from deploy.config.deployments import EXTRACTOR_NAME as EXTRACTOR
from deploy.config.deployments import INGRESS_NAME as INGRESS
from deploy.config.deployments import OLLAMA_DEPLOYMENT_NAME as OLLAMA
from deploy.config.deployments import STREAM_INGEST_NAME as STREAMS
from deploy.config.deployments import TRANSCRIBER_NAME as ASR
from deploy.config.deployments import VLLM_DEPLOYMENT_NAME as VLLM
from deploy.config.serve_config import (
    BASE_CONFIG,
    Profile,
    app_args,
    load_config,
    merge,
    overlay_path,
    validate,
)
from deploy.config.settings import AppArgs


@pytest.mark.parametrize("profile", list(Profile))
def test_each_profile_is_valid_for_ray_and_for_the_app(profile: Profile) -> None:
    config = load_config(profile=profile)
    args = AppArgs.model_validate(app_args(config))
    expected = "cpu" if profile is Profile.CPU else "gpu"
    assert args.llm.accelerator.value == expected
    primary = "ollama" if profile is Profile.OLLAMA else "vllm"
    assert args.backends.primary.value == primary


@pytest.mark.parametrize(
    ("profile", "deployments"),
    [
        (Profile.GPU, {INGRESS, EXTRACTOR, VLLM, OLLAMA, ASR, EMBEDDER, STREAMS}),
        (Profile.CPU, {INGRESS, EXTRACTOR, VLLM, OLLAMA, ASR, EMBEDDER, STREAMS}),
        (Profile.OLLAMA, {INGRESS, EXTRACTOR, OLLAMA, ASR, STREAMS}),  # no torch: words only
    ],
)
def test_every_deployment_of_the_app_is_configured_in_the_yaml(
    profile: Profile, deployments: set[str]
) -> None:
    config = load_config(profile=profile)
    names = {d["name"] for d in config["applications"][0]["deployments"]}
    assert names == deployments
    for deployment in config["applications"][0]["deployments"]:
        assert "max_ongoing_requests" in deployment
        # Every stage refuses at once when full (503 + Retry-After), never queues unbounded.
        assert deployment["max_queued_requests"] > 0, deployment["name"]
        if deployment["name"] == STREAMS:  # streams are taken by lease, not routed: fixed count
            assert deployment["num_replicas"] >= 1
            assert "autoscaling_config" not in deployment
        else:
            scaling = deployment["autoscaling_config"]
            assert 1 <= scaling["min_replicas"] <= scaling["max_replicas"], deployment["name"]
            assert scaling["target_ongoing_requests"] <= deployment["max_ongoing_requests"]
        for key in ("graceful_shutdown_timeout_s", "health_check_period_s"):
            assert key in deployment, (deployment["name"], key)
        assert deployment["health_check_timeout_s"] > deployment["health_check_period_s"]


@pytest.mark.parametrize("profile", list(Profile))
def test_no_replica_is_stopped_under_a_request_it_may_still_answer(profile: Profile) -> None:
    """graceful_shutdown_timeout_s (how long a stopping replica may finish its requests) is at
    least the longest a request may take there: a scale-down or upgrade never cuts one off."""
    config = load_config(profile=profile)
    args = AppArgs.model_validate(app_args(config))
    grace = {
        d["name"]: d["graceful_shutdown_timeout_s"]
        for d in config["applications"][0]["deployments"]
    }
    longest = {OLLAMA: args.ollama.request_timeout_s}
    if VLLM in grace:
        longest[VLLM] = args.llm.request_timeout_s
    for name, timeout_s in longest.items():
        assert grace[name] >= timeout_s, (name, grace[name], timeout_s)
    assert grace[INGRESS] >= sum(longest.values()), (grace[INGRESS], longest)


def _leaves(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_leaves(value, f"{prefix}.{key}"))
        return out
    if isinstance(tree, list) and all(isinstance(i, dict) and "name" in i for i in tree):
        out = {}
        for item in tree:
            rest = {k: v for k, v in item.items() if k != "name"}
            out.update(_leaves(rest, f"{prefix}[{item['name']}]"))
        return out
    return {prefix: tree}


@pytest.mark.parametrize("profile", [Profile.CPU, Profile.OLLAMA])
def test_overlays_write_no_setting_twice(profile: Profile) -> None:
    base = _leaves(yaml.safe_load(BASE_CONFIG.read_text()))
    overlay_file = overlay_path(BASE_CONFIG, profile)
    assert overlay_file is not None
    overlay = _leaves(yaml.safe_load(overlay_file.read_text()))
    repeated = {key for key, value in overlay.items() if base.get(key) == value}
    assert repeated == set()


def test_merge_is_by_key_and_by_name() -> None:
    base = {"a": {"x": 1, "y": 2}, "items": [{"name": "p", "v": 1}, {"name": "q", "v": 2}]}
    overlay = {"a": {"y": 3}, "items": [{"name": "q", "v": 5}, {"name": "r", "v": 6}]}
    assert merge(base, overlay) == {
        "a": {"x": 1, "y": 3},
        "items": [{"name": "p", "v": 1}, {"name": "q", "v": 5}, {"name": "r", "v": 6}],
    }
    assert base["a"] == {"x": 1, "y": 2}


def test_invalid_config_is_rejected_with_the_reason(tmp_path: Path) -> None:
    config = yaml.safe_load(BASE_CONFIG.read_text())
    config["applications"][0]["args"]["llm"]["max_model_len"] = "long"
    path = tmp_path / "serve_config.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match="max_model_len"):
        load_config(path)
    config["applications"][0]["deployments"][0]["max_ongoing_requestz"] = 3
    config["applications"][0]["args"]["llm"]["max_model_len"] = 4096
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match="not valid for Ray Serve"):
        load_config(path)


@pytest.mark.parametrize(
    ("scaling", "message"),
    [
        ({"min_replicas": 3, "max_replicas": 2}, "must be greater than or equal to min_replicas"),
        ({"upscale_delay_z": 3}, "unknown key.*upscale_delay_z"),
    ],
)
def test_autoscaling_config_is_checked_before_deploy(
    tmp_path: Path, scaling: dict[str, Any], message: str
) -> None:
    """Ray's schema takes autoscaling_config as any mapping; Serve would refuse it only when
    the deployment is created, on the cluster."""
    config = yaml.safe_load(BASE_CONFIG.read_text())
    config["applications"][0]["deployments"][1]["autoscaling_config"].update(scaling)
    path = tmp_path / "serve_config.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match=message):
        load_config(path)


def test_settings_for_a_deployment_the_policy_does_not_create_are_refused(tmp_path: Path) -> None:
    config = yaml.safe_load(BASE_CONFIG.read_text())
    config["applications"][0]["args"]["backends"] = {"primary": "vllm", "fallback": "none"}
    path = tmp_path / "serve_config.yaml"
    path.write_text(yaml.safe_dump(config))
    # vidserve's own loader drops them (what `vidserve config` prints for serve deploy) ...
    names = {d["name"] for d in load_config(path)["applications"][0]["deployments"]}
    assert OLLAMA not in names
    # ... and validating the file as written says what is wrong instead of Serve's error.
    with pytest.raises(ValueError, match="'Ollama', which it does not deploy with backends vllm"):
        validate(config)
