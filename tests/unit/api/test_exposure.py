"""Who can reach an API without keys (issue 26): with no API key configured the default config
listened on 0.0.0.0, so every job, caption and search result was open to the network; and keys
from VIDSERVE_API_KEYS were accepted whatever their length."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.api.auth import ApiKeys, check_exposure
from deploy.config.serve_config import BASE_CONFIG, bind_safely, load_config
from deploy.config.settings import AppArgs, AuthSettings

KEY = "exposure-key-0123456789"


def _config(host: str, **auth: object) -> dict[str, object]:
    config = load_config(BASE_CONFIG)
    config["http_options"]["host"] = host
    config["applications"][0]["args"]["auth"] = dict(auth)
    return config


def test_without_keys_vidserve_run_binds_loopback_and_says_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("VIDSERVE_API_KEYS", raising=False)
    monkeypatch.delenv("VIDSERVE_API_KEYS_FILE", raising=False)
    config = _config("0.0.0.0")
    note = bind_safely(config)
    assert config["http_options"]["host"] == "127.0.0.1"
    assert note is not None
    assert "auth.allow_open_network" in note
    assert "VIDSERVE_API_KEYS" in note


@pytest.mark.parametrize(
    ("host", "auth", "env_key", "kept"),
    [
        ("0.0.0.0", {"allow_open_network": True}, None, True),  # said so explicitly
        ("0.0.0.0", {}, KEY, True),  # keys from the environment
        ("0.0.0.0", {"api_keys": [KEY]}, None, True),
        ("127.0.0.1", {}, None, True),
        ("::1", {}, None, True),
    ],
)
def test_an_open_address_is_kept_only_with_keys_or_when_allowed(
    monkeypatch: pytest.MonkeyPatch,
    host: str,
    auth: dict[str, object],
    env_key: str | None,
    kept: bool,
) -> None:
    monkeypatch.delenv("VIDSERVE_API_KEYS_FILE", raising=False)
    if env_key:
        monkeypatch.setenv("VIDSERVE_API_KEYS", env_key)
    else:
        monkeypatch.delenv("VIDSERVE_API_KEYS", raising=False)
    config = _config(host, **auth)
    assert bind_safely(config) is None
    assert config["http_options"]["host"] == host


def test_in_a_cluster_an_ingress_without_keys_refuses_to_start() -> None:
    args = AppArgs()
    with pytest.raises(ValueError, match=r"auth\.allow_open_network") as refused:
        check_exposure(args.auth, ApiKeys([]), in_cluster=True)
    assert "VIDSERVE_API_KEYS_FILE" in str(refused.value)
    check_exposure(args.auth, ApiKeys([KEY]), in_cluster=True)
    check_exposure(args.auth, ApiKeys([]), in_cluster=False)  # vidserve run binds loopback
    allowed = AuthSettings(allow_open_network=True)
    check_exposure(allowed, ApiKeys([]), in_cluster=True)


def test_keys_from_the_environment_have_the_same_minimum_length(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("VIDSERVE_API_KEYS", f"{KEY},tiny-7x")
    with pytest.raises(ValueError, match="VIDSERVE_API_KEYS") as refused:
        ApiKeys.load(AuthSettings())
    assert "16 characters" in str(refused.value)
    assert "tiny-7x" not in str(refused.value)  # a key is never echoed
