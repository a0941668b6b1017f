"""Long-video jobs on the real Serve app (the real vLLM engine on the tiny model): a 3-minute
video chaptered with progress events in order, chapters covering the video, search finding a
chunk by a word of its caption, cancel, bad input, and each key seeing only its own jobs.

The tiny model's words are random; a structured `response_format` (an enum) makes its captions
exact, so search has a word to find."""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import FILE_KEY, OLLAMA_ONLY_PREFIX, Media
from tests.support.ollama_stub import OllamaStub
from tests.support.videos import write_h264

DURATION_S = 180
CAPTION = "zebra crossing"
RESPONSE_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": "caption",
        "schema": {
            "type": "object",
            "properties": {"caption": {"type": "string", "enum": [CAPTION]}},
            "required": ["caption"],
            "additionalProperties": False,
        },
    },
}


@pytest.fixture(scope="module")
def long_video(media: Media) -> Path:
    """Three minutes at 2 frames a second, small: quick to upload and decode."""
    return write_h264(
        media.local_dir / "three-minutes.mp4", DURATION_S * 2, 2.0, (160, 120), gop=20
    )


def _events(http: httpx.Client, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    with http.stream("GET", f"{path}/events", timeout=300) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        name = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: ") and name != "done":
                yield name, json.loads(line.removeprefix("data: "))
            elif line.startswith("data: ") and name == "done":
                return


def _submit(http: httpx.Client, video: Path, **fields: Any) -> httpx.Response:
    data = {k: json.dumps(v) if isinstance(v, dict) else str(v) for k, v in fields.items()}
    with video.open("rb") as handle:
        return http.post(
            "/v1/video/jobs", files={"file": (video.name, handle, "video/mp4")}, data=data
        )


def test_a_chapters_job_streams_progress_and_covers_the_video(
    serve_url: str, long_video: Path
) -> None:
    with httpx.Client(base_url=serve_url, timeout=60) as http:
        created = _submit(
            http, long_video, task="chapters", chunk_s=30, frames_per_chunk=2,
            response_format=RESPONSE_FORMAT,
        )  # fmt: skip
        assert created.status_code == 202, created.text
        job = created.json()
        assert job["state"] == "queued"
        assert created.headers["location"] == f"/v1/video/jobs/{job['id']}"
        events = list(_events(http, created.headers["location"]))
        chunks = [data for name, data in events if name == "chunk"]
        assert sorted(c["index"] for c in chunks) == list(range(6))
        seen = [c["progress"]["chunks_seen"] for c in chunks]
        assert seen == list(range(1, 7))  # one event per chunk, progress in order
        assert all(json.loads(c["text"]) == {"caption": CAPTION} for c in chunks)
        assert [c["start_s"] for c in sorted(chunks, key=lambda c: c["index"])] == [
            0, 30, 60, 90, 120, 150,
        ]  # fmt: skip
        assert events[-1][0] == "result"
        result = events[-1][1]
        assert result["state"] == "succeeded", result
        chapters = result["result"]["chapters"]
        assert chapters[0]["start_s"] == 0
        assert chapters[-1]["end_s"] == pytest.approx(DURATION_S, abs=1)
        for before, after in itertools.pairwise(chapters):
            assert before["end_s"] == after["start_s"]  # no gaps, no overlaps
        assert result["result"]["summary"]
        assert result["result"]["failed_chunks"] == []

        found = http.get(created.headers["location"]).json()
        assert found["progress"] == {"chunks_done": 6, "chunks_failed": 0, "chunks_total": 6}
        assert len(found["chunks"]) == 6

        hits = http.get("/v1/video/search", params={"q": "zebra"}).json()["data"]
        mine = [h for h in hits if h["job_id"] == job["id"]]
        assert mine
        assert mine[0]["kind"] == "caption"
        assert mine[0]["video"] == long_video.name
        assert {h["start_s"] for h in mine} <= {0, 30, 60, 90, 120, 150}

        listed = http.get("/v1/video/jobs", params={"limit": 100}).json()["data"]
        assert job["id"] in [j["id"] for j in listed]


def test_a_job_from_a_file_url_and_its_cancel(serve_url: str, long_video: Path) -> None:
    with httpx.Client(base_url=serve_url, timeout=60) as http:
        created = http.post(
            "/v1/video/jobs",
            json={"url": long_video.as_uri(), "task": "captions", "chunk_s": 2,
                  "frames_per_chunk": 1},
        )  # fmt: skip
        assert created.status_code == 202, created.text
        path = created.headers["location"]
        for name, _data in _events(http, path):
            if name == "chunk":  # running: cancel it
                break
        cancelled = http.delete(path)
        assert cancelled.status_code == 200
        assert cancelled.json()["state"] == "cancelled"
        done = cancelled.json()["progress"]["chunks_done"]
        time.sleep(3)  # nothing more is computed once cancelled
        later = http.get(path).json()
        assert later["state"] == "cancelled"
        assert later["progress"]["chunks_done"] <= done + 2  # at most the chunks in flight
        assert later["progress"]["chunks_total"] == 90


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"task": "transcribe"}, "task"),
        ({"task": "summarize", "chunk_s": 0.5}, "chunk_s"),
        ({"task": "summarize", "chunk_s": 10, "overlap_s": 10}, "overlap_s"),
        ({"task": "summarize", "frames_per_chunk": 1000}, "frames_per_chunk"),
        ({"task": "summarize", "colour": "red"}, "colour"),
    ],
)
def test_bad_job_requests_are_400_naming_the_field(
    serve_url: str, long_video: Path, fields: dict[str, Any], param: str
) -> None:
    with httpx.Client(base_url=serve_url, timeout=60) as http:
        response = _submit(http, long_video, **fields)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_not_a_video_and_unknown_jobs(serve_url: str) -> None:
    with httpx.Client(base_url=serve_url, timeout=60) as http:
        response = http.post(
            "/v1/video/jobs",
            files={"file": ("notes.mp4", b"just text\n" * 50, "video/mp4")},
            data={"task": "summarize"},
        )
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "unsupported_media"
        missing = http.get("/v1/video/jobs/job_nope")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "job_not_found"
        assert http.get("/v1/video/search").json()["error"]["param"] == "q"


def test_a_key_sees_only_its_own_jobs(client: httpx.Client, media: Media) -> None:
    """The keyed (Ollama-only) app: a job made with one key is, for another, as if it did not
    exist."""
    created = client.post(
        f"{OLLAMA_ONLY_PREFIX}/v1/video/jobs",
        files={"file": ("clip.mp4", media.video, "video/mp4")},
        data={"task": "captions"},
    )
    assert created.status_code == 202, created.text
    path = f"{OLLAMA_ONLY_PREFIX}/v1/video/jobs/{created.json()['id']}"
    other = {"Authorization": f"Bearer {FILE_KEY}"}
    assert client.get(path).status_code == 200
    assert client.get(path, headers=other).status_code == 404
    assert client.delete(path, headers=other).status_code == 404
    listed = client.get(f"{OLLAMA_ONLY_PREFIX}/v1/video/jobs", headers=other).json()["data"]
    assert created.json()["id"] not in [job["id"] for job in listed]
    events = list(_events(client, path))  # the owner follows it to the end
    assert events[-1][1]["state"] == "succeeded", events[-1]


def test_the_cli_summarizes_with_progress_and_prints_chapters(
    serve_url: str, long_video: Path
) -> None:
    import io

    from deploy.cli.summarize import Job, run

    out, err = io.StringIO(), io.StringIO()
    job = Job(server=serve_url, source=str(long_video), task="chapters", chunk_s=60,
              frames_per_chunk=1)  # fmt: skip
    assert run(job, out, err) == 0, err.getvalue()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[00:00:00-")  # the first chapter opens the video
    assert any(line.startswith("[") and "-00:03:00]" in line for line in lines)
    assert "chunks" in err.getvalue()  # the progress bar over chunks
    assert "upload" in err.getvalue()


def test_a_job_survives_its_ingress_replica_dying(
    client: httpx.Client, stub: OllamaStub, long_video: Path
) -> None:
    """Kill the keyed app's ingress replica mid-job: the replica Serve starts again resumes the
    job once its lease runs out, from its last finished chunk. The engine (the Ollama stand-in)
    is asked about each chunk once: which chunk a caption request is about is read from the
    frame it carries (each frame shows its own index)."""
    from tests.support.load import kill_replica

    path, done_before = _keyed_job_under_way(client, stub, long_video)
    kill_replica("Ingress", app="vidserve-ollama")
    after = _wait_for(client, path, lambda job: job["state"] == "succeeded", timeout_s=180)
    assert after["progress"] == {"chunks_done": 30, "chunks_failed": 0, "chunks_total": 30}

    asked = _chunks_asked(stub)  # chunk -> caption requests the engine got
    assert set(asked) == set(range(30))
    assert all(asked[index] == 1 for index in done_before)  # nothing finished is redone
    assert sum(asked.values()) <= 30 + 2  # at most the chunks in flight at the kill, twice


def _keyed_job_under_way(
    client: httpx.Client, stub: OllamaStub, long_video: Path
) -> tuple[str, set[int]]:
    """A 30-chunk captions job on the keyed app, slowed by the stand-in (0.3 s a caption) so it
    can be interrupted; its path and the chunks done once 4 are."""
    stub.behaviour.delay_s = 0.3
    with long_video.open("rb") as handle:
        created = client.post(
            f"{OLLAMA_ONLY_PREFIX}/v1/video/jobs",
            files={"file": (long_video.name, handle, "video/mp4")},
            data={"task": "captions", "chunk_s": "6", "frames_per_chunk": "1"},
        )
    assert created.status_code == 202, created.text
    path = f"{OLLAMA_ONLY_PREFIX}/v1/video/jobs/{created.json()['id']}"
    before = _wait_for(client, path, lambda job: job["progress"]["chunks_done"] >= 4)
    return path, {chunk["index"] for chunk in before["chunks"]}


def _wait_for(
    client: httpx.Client, path: str, done: Callable[[dict[str, Any]], bool], timeout_s: float = 60
) -> dict[str, Any]:
    """The job once `done(job)`; answers of a replica restarting (5xx, refused) are waited out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            response = client.get(path)
        except httpx.TransportError:
            response = None
        if response is not None and response.status_code == 200 and done(job := response.json()):
            return job
        time.sleep(0.3)
    raise TimeoutError(f"{path} did not get there in {timeout_s:.0f} s")


def test_a_chat_question_about_a_finished_job(serve_url: str, long_video: Path) -> None:
    """video_options.job_id: the frames sent are those of a chunk the question matches (which
    one ranks first among equal captions is the search's: tests/integration/jobs/test_ask.py checks
    the choice)."""
    schema = json.loads(json.dumps(RESPONSE_FORMAT))
    schema["json_schema"]["schema"]["properties"]["caption"]["enum"] = ["a lighthouse"]
    with httpx.Client(base_url=serve_url, timeout=120) as http:
        created = http.post(
            "/v1/video/jobs",
            json={"url": long_video.as_uri(), "task": "captions", "chunk_s": 60,
                  "frames_per_chunk": 2, "response_format": schema},
        )  # fmt: skip
        assert created.status_code == 202, created.text
        finished = list(_events(http, created.headers["location"]))[-1][1]
        assert finished["state"] == "succeeded", finished
        model = http.get("/v1/models").json()["data"][0]["id"]
        body = {
            "model": model,
            "messages": [{"role": "user", "content": "When is the lighthouse seen?"}],
            "max_tokens": 8,
            "video_options": {"job_id": created.json()["id"]},
        }
        answered = http.post("/v1/chat/completions", json=body)
        assert answered.status_code == 200, answered.text
        frames = answered.json()["vidserve"]["frames"]
        assert frames["count"] == 2
        # the frames of one chunk (every caption matches here: any one of them), not the video's
        chunk = int(frames["timestamps"][0] // 60)
        assert all(chunk * 60 <= t < chunk * 60 + 60 for t in frames["timestamps"])
        body["video_options"] = {"job_id": "job_nope"}
        assert http.post("/v1/chat/completions", json=body).status_code == 404


def test_a_job_resumes_after_its_app_is_restarted(
    client: httpx.Client, stub: OllamaStub, long_video: Path, deployed_config: dict[str, Any]
) -> None:
    """The keyed app deleted mid-job (its replicas stop: the runner hands its lease back) and
    deployed again: the new ingress resumes the job from the store; finished chunks are not
    asked again."""
    from ray import serve

    from deploy.cli import runner

    path, done_before = _keyed_job_under_way(client, stub, long_video)

    others = [a for a in deployed_config["applications"] if a["name"] != "vidserve-ollama"]
    runner.deploy({**deployed_config, "applications": others})  # the keyed app deleted
    deadline = time.monotonic() + 120
    while "vidserve-ollama" in serve.status().applications and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "vidserve-ollama" not in serve.status().applications
    runner.deploy(deployed_config)
    runner.wait_until_running(300, progress=print, app="vidserve-ollama")

    after = _wait_for(client, path, lambda job: job["state"] == "succeeded", timeout_s=180)
    assert after["progress"]["chunks_done"] == 30
    asked = _chunks_asked(stub)
    assert set(asked) == set(range(30))
    assert all(asked[index] == 1 for index in done_before)
    assert sum(asked.values()) <= 30 + 2


def _chunks_asked(stub: OllamaStub) -> Counter[int]:
    """Caption requests the engine (the stand-in) got, per chunk: read from the frame each one
    carries (2 frames a second, 6 s chunks)."""
    from tests.support.ollama_stub import decode_images
    from tests.support.videos import decode_index

    asked: Counter[int] = Counter()
    for chat in stub.chats:
        for image in decode_images(chat):
            asked[decode_index(image) // 2 // 6] += 1
    return asked


def test_a_job_finishes_when_the_vllm_replica_dies(
    serve_url: str, stub: OllamaStub, long_video: Path
) -> None:
    """The vLLM replica killed mid-job: the backend policy hands the chunks to Ollama (the
    stand-in) while Serve replaces it; the job finishes with every chunk recorded once and none
    failed. Waits for vLLM to be back, for the tests after it."""
    import asyncio

    from tests.support.load import kill_replica, wait_ready

    with httpx.Client(base_url=serve_url, timeout=60) as http:
        created = http.post(
            "/v1/video/jobs",
            json={"url": long_video.as_uri(), "task": "captions", "chunk_s": 2,
                  "frames_per_chunk": 1},
        )  # fmt: skip
        assert created.status_code == 202, created.text
        path = created.headers["location"]
        _wait_for(http, path, lambda job: job["progress"]["chunks_done"] >= 3)
        kill_replica("VLLM")
        job = _wait_for(
            http, path, lambda job: job["state"] in ("succeeded", "failed"), timeout_s=300
        )
    assert job["state"] == "succeeded", job["error"]
    assert job["progress"] == {"chunks_done": 90, "chunks_failed": 0, "chunks_total": 90}
    assert [chunk["index"] for chunk in job["chunks"]] == list(range(90))  # each once
    assert stub.chats  # the fallback answered while vLLM was down
    asyncio.run(wait_ready(serve_url, 600))
