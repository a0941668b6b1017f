"""Library search over HTTP on the ingress's real Starlette app (no Ray), on both databases:
a job's chunks are embedded by the real all-MiniLM-L6-v2 as they are recorded, and
GET /v1/video/search finds what was said by meaning; bad parameters are 400s naming them; a
job's video is served with Range requests."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.config.settings import AppArgs, JobsSettings
from tests.support.jobs_app import ScriptedWork, finished, jobs_client
from tests.support.library import EncoderHandle
from tests.support.videos import write_h264


@pytest.fixture
def video(tmp_path: Path) -> Path:
    return write_h264(tmp_path / "depot.mp4", 20, 10.0, (64, 48))


def test_what_was_said_is_found_by_meaning_as_the_job_runs(
    store_url: str, tmp_path: Path, video: Path
) -> None:
    args = AppArgs(jobs=JobsSettings(data_dir=tmp_path))
    work = ScriptedWork(duration_s=65.0, speech=True)  # each chunk: "the driver says refuel ..."
    embedder = EncoderHandle()
    with jobs_client(args, store_url, work, embedder) as client:
        with video.open("rb") as handle:
            created = client.post(
                "/v1/video/jobs", files={"file": ("depot.mp4", handle)}, data={"task": "captions"}
            )
        assert created.status_code == 202, created.text
        job = finished(client, created.headers["location"])
        assert job["state"] == "succeeded"
        assert embedder.calls >= 2  # indexed as chunks were recorded, then the query
        query = "topping up a vehicle with petrol"  # shares no word with caption or speech
        found = client.get("/v1/video/search", params={"q": query})
        assert found.status_code == 200, found.text
        body = found.json()
        assert body["mode"] == "hybrid"
        assert body["embedding_model"] == "sentence-transformers/all-MiniLM-L6-v2"
        assert body["note"] is None  # every text has its vector
        best = body["data"][0]
        assert (best["video"], best["kind"], best["match"]) == ("depot.mp4", "speech", "semantic")
        assert best["job_id"] == job["id"]
        assert best["similarity"] >= 0.25
        assert best["text_rank"] is None
        assert (best["start_s"], best["end_s"]) in [(0.0, 30.0), (30.0, 60.0), (60.0, 65.0)]
        by_words = client.get("/v1/video/search", params={"q": query, "mode": "text"}).json()
        assert by_words["data"] == []
        both = client.get("/v1/video/search", params={"q": "refuel driver"}).json()
        assert both["data"][0]["match"] == "both"


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({}, "q"),
        ({"q": "  "}, "q"),
        ({"q": "x" * 1001}, "q"),
        ({"q": "truck", "mode": "fuzzy"}, "mode"),
        ({"q": "truck", "limit": "0"}, "limit"),
        ({"q": "truck", "limit": "1e3"}, "limit"),
    ],
)
def test_bad_search_parameters_are_400_naming_them(
    tmp_path: Path, params: dict[str, str], param: str
) -> None:
    args = AppArgs(jobs=JobsSettings(data_dir=tmp_path))
    with jobs_client(args, f"sqlite:///{tmp_path / 'j.db'}", ScriptedWork(1.0)) as client:
        response = client.get("/v1/video/search", params=params)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_without_an_embedder_search_is_by_words_and_says_so(tmp_path: Path, video: Path) -> None:
    args = AppArgs(jobs=JobsSettings(data_dir=tmp_path))
    work = ScriptedWork(duration_s=35.0, speech=True)
    with jobs_client(args, f"sqlite:///{tmp_path / 'j.db'}", work) as client:
        with video.open("rb") as handle:
            created = client.post(
                "/v1/video/jobs", files={"file": ("depot.mp4", handle)}, data={"task": "captions"}
            )
        finished(client, created.headers["location"])
        body = client.get("/v1/video/search", params={"q": "refuel"}).json()
        assert body["mode"] == "text"
        assert "search.semantic" in body["note"]
        assert body["data"][0]["match"] == "text"
        semantic = client.get("/v1/video/search", params={"q": "refuel", "mode": "semantic"})
        assert semantic.status_code == 400
        assert semantic.json()["error"]["code"] == "semantic_search_disabled"


def test_a_jobs_video_is_served_with_range_requests(tmp_path: Path, video: Path) -> None:
    args = AppArgs(jobs=JobsSettings(data_dir=tmp_path))
    with jobs_client(args, f"sqlite:///{tmp_path / 'j.db'}", ScriptedWork(35.0)) as client:
        with video.open("rb") as handle:
            created = client.post(
                "/v1/video/jobs", files={"file": ("depot.mp4", handle)}, data={"task": "captions"}
            )
        job = finished(client, created.headers["location"])
        part = client.get(f"/v1/video/jobs/{job['id']}/media", headers={"Range": "bytes=0-99"})
        assert part.status_code == 206
        assert part.content == video.read_bytes()[:100]
        whole = client.get(f"/v1/video/jobs/{job['id']}/media")
        assert whole.content == video.read_bytes()
        assert client.get("/v1/video/jobs/job_nope/media").status_code == 404
        assert client.delete(f"/v1/video/jobs/{job['id']}").status_code == 200
        assert client.get(f"/v1/video/jobs/{job['id']}/media").status_code == 404
