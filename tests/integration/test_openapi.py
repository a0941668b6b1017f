"""The API fuzzed against its own OpenAPI document (issue 26): schemathesis generates requests
for every route from `GET /openapi.json` (generated from the request models, api/openapi.py),
sends them to the running app (real Serve, the real vLLM engine on the tiny model; the keyed
Ollama-only app behind API keys) and checks each answer: never a 5xx, the body matches the
documented schema for its status, and (keyed app) a request without its key or with a wrong one
is refused. Any 5xx it finds is a bug to fix."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import ignored_auth, response_schema_conformance

from tests.integration.conftest import CONFIG_KEY, OLLAMA_ONLY_PREFIX

CHECKS = [not_a_server_error, response_schema_conformance]
EXAMPLES = 25  # per operation and app: a few hundred requests in all


@pytest.fixture(scope="session")
def main_schema(serve_url: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{serve_url}/openapi.json")


@pytest.fixture(scope="session")
def keyed_schema(serve_url: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{serve_url}{OLLAMA_ONLY_PREFIX}/openapi.json")


main = schemathesis.pytest.from_fixture("main_schema")
keyed = schemathesis.pytest.from_fixture("keyed_schema")
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same requests on every run: a failure can be rerun
)


@main.parametrize()
@FUZZ
def test_the_main_app_answers_every_generated_request_as_documented(
    case: schemathesis.Case, serve_url: str
) -> None:
    case.call_and_validate(base_url=serve_url, checks=CHECKS, timeout=120)


@keyed.parametrize()
@FUZZ
def test_the_keyed_app_answers_as_documented_and_never_without_its_key(
    case: schemathesis.Case, serve_url: str
) -> None:
    case.call_and_validate(
        base_url=f"{serve_url}{OLLAMA_ONLY_PREFIX}",
        headers={"Authorization": f"Bearer {CONFIG_KEY}"},
        checks=[*CHECKS, ignored_auth],
        timeout=120,
    )


def test_the_document_is_served_without_a_key_and_names_the_routes(serve_url: str) -> None:
    document = httpx.get(f"{serve_url}{OLLAMA_ONLY_PREFIX}/openapi.json", timeout=30).json()
    assert document["openapi"] == "3.1.0"
    assert document["servers"] == [{"url": OLLAMA_ONLY_PREFIX}]
    paths = document["paths"]
    assert {"/v1/chat/completions", "/v1/video/analyze", "/v1/video/jobs"} <= set(paths)
    assert paths["/v1/chat/completions"]["post"]["security"] == [{"bearer": []}]
    assert "security" not in paths["/healthz"]["get"]
