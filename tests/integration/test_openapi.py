"""The API fuzzed against its own OpenAPI document (issue 26): schemathesis generates requests
for every route from `GET /openapi.json` (generated from the request models, api/openapi.py),
valid ones and ones that break the schema, sends them to the running app (real Serve, the real
vLLM engine on the tiny model; the keyed Ollama-only app behind API keys) and checks each
answer: never a 5xx, the body matches the documented schema for its status, and (keyed app) a
request without its key or with a wrong one is refused. Any 5xx it finds is a bug to fix.

(schemathesis' own pytest loader does not run on pytest 9, so the test drives its Python API:
one hypothesis run per operation and generation mode, failures collected and shown together.)
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import ignored_auth, response_schema_conformance

from tests.integration.conftest import CONFIG_KEY, OLLAMA_ONLY_PREFIX

CHECKS = [not_a_server_error, response_schema_conformance]
EXAMPLES = 20  # per operation, mode and app: several hundred requests in all
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same requests on every run: a failure can be rerun
    database=None,
)


def _fuzz(base_url: str, headers: dict[str, str], checks: list[Any]) -> list[str]:
    """Every operation of the app's document, in both generation modes: the failures found.
    (An operation with nothing to break, e.g. GET /healthz, has no negative cases.)"""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    failures: list[str] = []
    sent = Counter[str]()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @FUZZ
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: schemathesis.Case) -> None:
                sent[case.operation.label] += 1
                case.call_and_validate(
                    base_url=base_url, headers=headers, checks=checks, timeout=120
                )

            try:
                run()
            except Unsatisfiable:
                continue  # no request can break this operation's schema
            except Exception as exc:  # noqa: BLE001 - every operation is tried, then reported
                label = f"{operation.method.upper()} {operation.path} ({mode.value})"
                failures.append(f"{label}: {exc}")
    print(f"schemathesis sent {sum(sent.values())} requests: {dict(sent)}")
    assert len(sent) == len(operations)  # every operation was exercised
    return failures


def test_the_main_app_answers_every_generated_request_as_documented(serve_url: str) -> None:
    failures = _fuzz(serve_url, {}, CHECKS)
    assert not failures, "\n\n".join(failures)[:20000]


def test_the_keyed_app_answers_as_documented_and_never_without_its_key(serve_url: str) -> None:
    failures = _fuzz(
        f"{serve_url}{OLLAMA_ONLY_PREFIX}",
        {"Authorization": f"Bearer {CONFIG_KEY}"},
        [*CHECKS, ignored_auth],
    )
    assert not failures, "\n\n".join(failures)[:20000]


def test_the_document_is_served_without_a_key_and_names_the_routes(serve_url: str) -> None:
    document = httpx.get(f"{serve_url}{OLLAMA_ONLY_PREFIX}/openapi.json", timeout=30).json()
    assert document["openapi"] == "3.1.0"
    assert document["servers"] == [{"url": OLLAMA_ONLY_PREFIX}]
    paths = document["paths"]
    assert {"/v1/chat/completions", "/v1/video/analyze", "/v1/video/jobs"} <= set(paths)
    assert paths["/v1/chat/completions"]["post"]["security"] == [{"bearer": []}]
    assert "security" not in paths["/healthz"]["get"]
