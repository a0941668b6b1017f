"""The OpenAPI document is generated from the models the routes use, so it cannot drift from
them: the analyze form's model has exactly the fields the parser takes, the job views and error
bodies the routes build validate against the documented response models."""

from __future__ import annotations

import time

import schemathesis
from starlette.testclient import TestClient

from deploy.api import schemas
from deploy.api.analyze_form import FIELDS
from deploy.api.auth import ApiKeys
from deploy.api.error_body import error_body
from deploy.api.jobs_protocol import JobRequest, job_view
from deploy.api.library_routes import found_view
from deploy.api.openapi import AnalyzeForm, JobUpload, openapi_document
from deploy.config.settings import AppArgs
from deploy.core.errors import InvalidRequest
from deploy.core.jobs import JobState
from deploy.ingress import build_http_app
from deploy.jobs.fusion import fuse
from deploy.jobs.library import Found
from deploy.jobs.records import JobRecord, SearchHit
from deploy.serving.backends import BackendRouter
from deploy.serving.pipeline import AnalyzePipeline
from tests.support.recorders import MetricsRecorder

KEY = "openapi-test-key-0123456789"


def test_the_analyze_form_model_has_the_parsers_fields() -> None:
    assert tuple(AnalyzeForm.model_fields) == FIELDS


def test_the_job_upload_model_is_the_job_request_and_a_file() -> None:
    assert set(JobUpload.model_fields) == set(JobRequest.model_fields) | {"file"}


def test_the_views_routes_build_match_the_documented_models() -> None:
    now = time.time()
    job = JobRecord("j", "o", "captions", JobState.QUEUED, "v.mp4", "/v", {"task": "captions",
                    "chunk_s": 30.0}, now, now)  # fmt: skip
    schemas.JobView.model_validate(job_view(job, []))
    hit = SearchHit("j", "v.mp4", "speech", 0.0, 30.0, "said", 0.5)
    found = Found(fuse([hit], [hit], 60, 5), "hybrid", "m", "a note")
    schemas.SearchResults.model_validate(found_view(found))
    error = error_body(InvalidRequest("bad", param="x", code="invalid_value"), request_id="r")
    schemas.ErrorResponse.model_validate(error)


def test_the_document_is_valid_and_served_without_a_key() -> None:
    args = AppArgs()
    document = openapi_document(args, ["m"], jobs=True, keys=True)
    operations = list(schemathesis.openapi.from_dict(document).get_all_operations())
    assert len(operations) == 13  # with the jobs: their media and thumbnails too
    assert all(op.ok() for op in operations)

    class _NoBackend:
        name = "vllm"

    router = BackendRouter([_NoBackend()], args.backends.circuit_breaker)  # type: ignore[list-item]
    pipeline = AnalyzePipeline(extractor=None, router=router, args=args)  # type: ignore[arg-type]
    app = build_http_app(pipeline, args, ApiKeys([KEY]), MetricsRecorder())
    served = TestClient(app).get("/openapi.json")
    assert served.status_code == 200
    assert served.json()["servers"] == [{"url": "/"}]
    chat = served.json()["paths"]["/v1/chat/completions"]["post"]
    assert chat["security"] == [{"bearer": []}]
    assert "401" in chat["responses"]
    assert "/v1/video/jobs" not in served.json()["paths"]  # this app has no jobs
