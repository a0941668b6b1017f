"""API keys: where they come from, how they are checked, and which paths stay open."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from deploy.api.auth import ApiKeyMiddleware, ApiKeys
from deploy.config.settings import AppArgs, AuthSettings
from deploy.core.errors import Unauthorized

KEY_A = "key-a-0123456789abcdef"
KEY_B = "key-b-0123456789abcdef"
KEY_C = "key-c-0123456789abcdef"


def _settings(**fields: object) -> AuthSettings:
    return AuthSettings.model_validate(fields)


def test_keys_come_from_the_config_the_env_var_and_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"# rotated 2026-11\n\n  {KEY_C}  \n")
    monkeypatch.setenv("VIDSERVE_API_KEYS", f" {KEY_B} ,")
    keys = ApiKeys.load(_settings(api_keys=[KEY_A], api_keys_file=str(keys_file)))
    assert len(keys) == 3
    for key in (KEY_A, KEY_B, KEY_C):
        keys.check(f"Bearer {key}")
        keys.check(f"bearer  {key} ")


def test_the_keys_file_can_come_from_the_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text(KEY_C)
    monkeypatch.setenv("VIDSERVE_API_KEYS_FILE", str(keys_file))
    args = AppArgs.from_args({"llm": {"model": "Qwen/Qwen2.5-VL-7B-Instruct"}})
    assert args.auth.api_keys_file == keys_file
    ApiKeys.load(args.auth).check(f"Bearer {KEY_C}")


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "missing_api_key"),
        ("Basic dXNlcjpwYXNz", "invalid_api_key"),
        ("Bearer ", "invalid_api_key"),
        (f"Bearer {KEY_A[:-1]}", "invalid_api_key"),
        (f"Bearer {KEY_A}x", "invalid_api_key"),
        (KEY_A, "invalid_api_key"),
    ],
)
def test_anything_but_a_configured_bearer_key_is_refused(header: str | None, code: str) -> None:
    with pytest.raises(Unauthorized) as raised:
        ApiKeys([KEY_A]).check(header)
    assert raised.value.code == code
    assert raised.value.status_code == 401


def test_keys_are_not_kept_in_the_clear_and_config_hides_them() -> None:
    keys = ApiKeys([KEY_A])
    assert KEY_A.encode() not in repr(vars(keys)).encode()
    assert KEY_A not in repr(_settings(api_keys=[KEY_A]))


def test_bad_key_sources_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="shorter than 16"):
        _settings(api_keys=["short"])
    with pytest.raises(ValueError, match="cannot be read"):
        ApiKeys.load(_settings(api_keys_file=str(tmp_path / "missing")))
    short = tmp_path / "short"
    short.write_text(f"{KEY_A}\nshort\n")
    with pytest.raises(ValueError, match=r"line\(s\) \[2\]"):
        ApiKeys.load(_settings(api_keys_file=str(short)))


def _app(keys: ApiKeys) -> TestClient:
    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello")

    app = Starlette(routes=[Route("/healthz", hello), Route("/v1/models", hello)])
    guarded = ApiKeyMiddleware(app, keys, ("/healthz", "/readyz"))
    return TestClient(guarded, root_path="/prefix")


def test_the_middleware_guards_all_but_the_open_paths() -> None:
    client = _app(ApiKeys([KEY_A]))
    refused = client.get("/v1/models")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    assert refused.json()["error"] == {
        "message": refused.json()["error"]["message"],
        "type": "invalid_request_error",
        "code": "missing_api_key",
        "request_id": refused.json()["error"]["request_id"],
    }
    assert client.get("/v1/models", headers={"Authorization": f"Bearer {KEY_A}"}).text == "hello"
    assert client.get("/healthz").text == "hello"


def test_without_keys_the_api_is_open() -> None:
    assert _app(ApiKeys([])).get("/v1/models").text == "hello"


def test_open_paths_ending_in_a_star_are_prefixes() -> None:
    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello")

    app = Starlette(routes=[Route("/static/{name}", hello), Route("/staticky", hello)])
    guarded = TestClient(ApiKeyMiddleware(app, ApiKeys([KEY_A]), ("/static/*",)))
    assert guarded.get("/static/app.js").text == "hello"
    assert guarded.get("/staticky").status_code == 401
