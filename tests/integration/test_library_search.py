"""Library search against the real app: a job over a video with espeak-ng speech runs on the
real engine (tiny model), the Transcriber hears each chunk (real Whisper tiny.en), the Embedder
deployment embeds captions and transcripts (real all-MiniLM-L6-v2); GET /v1/video/search finds
the chunk by a query sharing no word with what was said; a chat question over the library cites
it; the page's thumbnail of a result is a JPEG of that time."""

from __future__ import annotations

import time
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from tests.support.speech import spoken, words

SAID = "Please remember to refuel the truck before noon."
QUERY = "filling up a lorry with diesel"  # no word in common with SAID
CHUNK_S = 10


@pytest.fixture(scope="module")
def job(serve_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    video = spoken(tmp_path_factory.mktemp("library") / "depot-talk.mp4", [(12.0, SAID)], 30.0)
    with httpx.Client(base_url=serve_url, timeout=60) as http, video.open("rb") as handle:
        created = http.post(
            "/v1/video/jobs",
            files={"file": (video.name, handle, "video/mp4")},
            data={"task": "captions", "chunk_s": str(CHUNK_S), "frames_per_chunk": "2"},
        )
        assert created.status_code == 202, created.text
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            state: dict[str, Any] = http.get(created.headers["location"]).json()
            if state["state"] not in ("queued", "running"):
                assert state["state"] == "succeeded", state
                return state
            time.sleep(0.5)
    raise AssertionError("the job did not finish in 300 s")


def test_what_was_said_is_found_by_meaning(serve_url: str, job: dict[str, Any]) -> None:
    assert not set(words(QUERY)) & set(words(SAID))
    with httpx.Client(base_url=serve_url, timeout=60) as http:
        deadline = time.monotonic() + 30  # the last chunk's vectors follow its record
        while True:
            found = http.get("/v1/video/search", params={"q": QUERY, "limit": 5})
            assert found.status_code == 200, found.text
            body = found.json()
            mine = [r for r in body["data"] if r["job_id"] == job["id"]]
            if mine or time.monotonic() > deadline:
                break
            time.sleep(1)
    assert body["mode"] == "hybrid"
    assert mine, body
    best = mine[0]
    assert (best["kind"], best["match"], best["video"]) == ("speech", "semantic", "depot-talk.mp4")
    assert (best["start_s"], best["end_s"]) == (10.0, 20.0)
    assert "refuel" in best["text"].lower()


def test_a_question_over_the_library_cites_the_chunk(serve_url: str, job: dict[str, Any]) -> None:
    with httpx.Client(base_url=serve_url, timeout=120) as http:
        model = http.get("/v1/models").json()["data"][0]["id"]
        body = {
            "model": model,
            "messages": [{"role": "user", "content": "Who has to refuel the truck, and when?"}],
            "max_tokens": 8,
            "video_options": {"job_ids": [job["id"]]},
        }
        bare = http.post(
            "/v1/chat/completions", json={k: v for k, v in body.items() if k != "video_options"}
        )
        assert bare.status_code == 200, bare.text
        answered = http.post("/v1/chat/completions", json=body)
        assert answered.status_code == 200, answered.text
        sources = answered.json()["vidserve"]["sources"]
        assert sources[0]["job_id"] == job["id"]
        citations = [s["citation"] for s in sources]
        assert "[depot-talk.mp4, 00:10-00:20]" in citations
        # The excerpts went in: the prompt is longer than the question alone, whichever backend
        # answered (vLLM, or the Ollama fallback when the engine was busy or restarting).
        grown = answered.json()["usage"]["prompt_tokens"] - bare.json()["usage"]["prompt_tokens"]
        said = [(r.json()["usage"], r.json()["vidserve"].get("fallback")) for r in (answered, bare)]
        assert grown > 20, said
        body["video_options"] = {"job_ids": ["job_nope"]}
        missing = http.post("/v1/chat/completions", json=body)
        assert missing.status_code == 404
        assert missing.json()["error"]["param"] == "video_options.job_ids"


def test_a_results_thumbnail_is_the_frame_at_its_time(serve_url: str, job: dict[str, Any]) -> None:
    with httpx.Client(base_url=serve_url, timeout=60) as http:
        thumb = http.get(f"/v1/video/jobs/{job['id']}/thumbnail", params={"t": "12.5"})
        assert thumb.status_code == 200, thumb.text
        assert thumb.headers["content-type"] == "image/jpeg"
        image = cv2.imdecode(np.frombuffer(thumb.content, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None
        assert image.shape[0] > 0
        bad = http.get(f"/v1/video/jobs/{job['id']}/thumbnail", params={"t": "nan"})
        assert bad.status_code == 400
        assert bad.json()["error"]["param"] == "t"


def test_the_page_loads_the_video_of_a_result(serve_url: str, job: dict[str, Any]) -> None:
    with httpx.Client(base_url=serve_url, timeout=60) as http:
        media = http.get(f"/v1/video/jobs/{job['id']}/media", headers={"Range": "bytes=0-15"})
    assert media.status_code == 206
    assert media.content[4:8] == b"ftyp"
