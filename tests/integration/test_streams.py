"""Live streams through the real app: ffmpeg publishes a camera clip into a real RTSP server
(RTSP::Server) on loopback, or writes live HLS served over loopback HTTP; the StreamIngest
replica decodes it, the real engine (tiny model) captions each 2 s window, and the windows are
the searchable chunks of the stream's library record. A source cut and brought back is
reconnected (counted, windows go on); a killed decoder replica's stream resumes on the new
one within the lease; bad requests are 4xx saying what is wrong."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray
from pytest_httpserver import HTTPServer

from tests.integration.conftest import CONFIG_KEY, FILE_KEY, OLLAMA_ONLY_PREFIX, STREAMS, LivePorts
from tests.support.live import HlsSource, RtspServer
from tests.support.speech import spoken

WINDOW_S = STREAMS["window_s"]
# The new replica starts, then takes the stream once the dead one's lease has run out.
RESUME_BOUND_S = 60.0


@pytest.fixture
def http(serve_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=serve_url, timeout=60) as client:
        yield client


def _create(http: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    created = http.post("/v1/streams", json=body)
    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"/v1/streams/{created.json()['id']}"
    view: dict[str, Any] = created.json()
    return view


def _wait(
    http: httpx.Client, stream_id: str, until: Callable[[dict[str, Any]], bool], timeout_s: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    view: dict[str, Any] = {}
    while time.monotonic() < deadline:
        view = http.get(f"/v1/streams/{stream_id}").json()
        if until(view):
            return view
        time.sleep(0.5)
    raise AssertionError(f"stream {stream_id} never got there in {timeout_s:g} s: {view}")


def _windows(http: httpx.Client, stream_id: str) -> list[dict[str, Any]]:
    listed = http.get(f"/v1/streams/{stream_id}/windows")
    assert listed.status_code == 200, listed.text
    data: list[dict[str, Any]] = listed.json()["data"]
    return data


def _stop(http: httpx.Client, stream_id: str) -> dict[str, Any]:
    stopped = http.delete(f"/v1/streams/{stream_id}")
    assert stopped.status_code == 200, stopped.text
    view: dict[str, Any] = stopped.json()
    return view


def test_an_rtsp_camera_is_captioned_window_by_window_and_searchable(
    http: httpx.Client, rtsp: RtspServer, clip: Path
) -> None:
    publisher = rtsp.publisher(clip, "front-door").start()
    try:
        stream = _create(http, {"url": rtsp.url("front-door"), "name": "front door"})
        assert stream["state"] == "starting"
        live = _wait(http, stream["id"], lambda v: v["windows"] >= 3, 90)
        assert live["state"] == "live"
        assert live["decoder"]
        windows = _windows(http, stream["id"])
        for window in windows:
            assert window["text"], window  # the engine's caption
            assert window["end_s"] - window["start_s"] == WINDOW_S
            assert window["start_s"] == window["index"] * WINDOW_S
        indexes = [w["index"] for w in windows]
        assert indexes == sorted(set(indexes))
        # The windows are the chunks of the stream's library record (searched like any video's:
        # test_stream_alerts.py searches a steered model's captions).
        record = http.get(f"/v1/video/jobs/{stream['id']}").json()
        assert (record["task"], record["video"]) == ("stream", "front door")
        assert record["progress"]["chunks_done"] >= 3
        stopped = _stop(http, stream["id"])
        assert stopped["state"] == "stopped"
        assert http.get(f"/v1/video/jobs/{stream['id']}").json()["state"] == "succeeded"
        # Its events replay the windows, then end: the stream is over.
        with http.stream("GET", f"/v1/streams/{stream['id']}/events") as events:
            lines = [line for line in events.iter_lines() if line.startswith("event: ")]
        assert lines.count("event: window") >= 3
        assert lines[-1] == "event: done"
    finally:
        publisher.stop()


def test_a_source_that_drops_is_reconnected_and_no_window_is_lost_after(
    http: httpx.Client, rtsp: RtspServer, clip: Path
) -> None:
    publisher = rtsp.publisher(clip, "yard").start()
    stream = _create(http, {"url": rtsp.url("yard")})
    try:
        _wait(http, stream["id"], lambda v: v["windows"] >= 1, 90)
        publisher.stop()  # the camera drops off the network
        _wait(http, stream["id"], lambda v: v["state"] == "reconnecting", 30)
        time.sleep(3)
        publisher.start()
        back = _wait(http, stream["id"], lambda v: v["state"] == "live", 60)
        assert back["reconnects"] >= 1
        returned_at = time.time() - stream["created_at"]
        _wait(
            http,
            stream["id"],
            lambda v: any(w["start_s"] > returned_at + WINDOW_S for w in _windows(http, v["id"])),
            60,
        )
        time.sleep(3 * WINDOW_S)
        after = [w["index"] for w in _windows(http, stream["id"]) if w["start_s"] > returned_at]
        assert len(after) >= 3
        assert after == list(range(after[0], after[0] + len(after))), after  # none missing
        assert _wait(http, stream["id"], lambda v: True, 1)["dropped"] == 0
    finally:
        _stop(http, stream["id"])
        publisher.stop()


def test_live_hls_over_http_is_captioned(
    http: httpx.Client, live_ports: LivePorts, clip: Path, tmp_path: Path
) -> None:
    hls = HlsSource(clip, tmp_path / "hls", port=live_ports.hls).start()
    try:
        stream = _create(http, {"url": hls.url, "frames_per_window": 3})
        _wait(http, stream["id"], lambda v: v["windows"] >= 2, 90)
        windows = _windows(http, stream["id"])
        assert all(w["text"] for w in windows)
        _stop(http, stream["id"])
    finally:
        hls.stop()


def test_a_playlist_cannot_send_the_decoder_to_a_private_address(
    http: httpx.Client, live_ports: LivePorts, internal_server: HTTPServer
) -> None:
    """An HLS playlist on a trusted host lists a segment on a private one: the segment is
    fetched by vidserve's guard, not by FFmpeg, so it is refused and the stream fails saying
    why; the private service is never reached."""
    playlist = HTTPServer(host="127.0.0.1", port=live_ports.hls)
    playlist.expect_request("/evil.m3u8").respond_with_data(
        "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n"
        f"#EXTINF:1.0,\n{internal_server.url_for('/secret.ts')}\n#EXT-X-ENDLIST\n",
        content_type="application/vnd.apple.mpegurl",
    )
    playlist.start()
    try:
        stream = _create(http, {"url": playlist.url_for("/evil.m3u8")})
        failed = _wait(http, stream["id"], lambda v: v["state"] == "failed", 30)
        assert failed["error"]["code"] == "url_not_allowed", failed
        assert "private" in failed["error"]["message"] or "loopback" in failed["error"]["message"]
        assert internal_server.log == []
    finally:
        playlist.stop()


def test_a_question_about_the_last_minutes_of_a_stream_cites_its_windows(
    http: httpx.Client, rtsp: RtspServer, clip: Path
) -> None:
    publisher = rtsp.publisher(clip, "lobby").start()
    stream = _create(http, {"url": rtsp.url("lobby"), "name": "lobby"})
    try:
        _wait(http, stream["id"], lambda v: v["windows"] >= 3, 90)
        model = http.get("/v1/models").json()["data"][0]["id"]
        asked = http.post(
            "/v1/chat/completions",
            json={
                "model": model,
                "max_tokens": 4,
                "messages": [{"role": "user", "content": "Did anyone come in?"}],
                "video_options": {"stream_id": stream["id"], "last_s": 4},
            },
        )
        assert asked.status_code == 200, asked.text
        sources = asked.json()["vidserve"]["sources"]
        now_s = time.time() - stream["created_at"]
        assert sources, asked.json()
        assert all(s["job_id"] == stream["id"] and s["video"] == "lobby" for s in sources)
        assert all(s["end_s"] > now_s - 4 - 2 * WINDOW_S for s in sources)  # the last seconds
        assert len(sources) <= 3
        wrong = http.post(
            "/v1/chat/completions",
            json={
                "model": model,
                "messages": [{"role": "user", "content": "Anything?"}],
                "video_options": {"stream_id": "stream_nope"},
            },
        )
        assert wrong.status_code == 404, wrong.text
        assert wrong.json()["error"]["code"] == "stream_not_found"
    finally:
        _stop(http, stream["id"])
        publisher.stop()


SAID = "Please remember to refuel the truck before noon."


def test_what_is_said_in_a_stream_is_heard_with_its_window(
    http: httpx.Client, live_ports: LivePorts, tmp_path: Path
) -> None:
    """HLS with sound (espeak-ng says a sentence twice in a 12 s loop): the Transcriber (real
    Whisper tiny.en) hears each window's sound; the transcript is kept with the window, in its
    caption's prompt, and found by search."""
    clip = spoken(tmp_path / "talk.mp4", [(1.0, SAID), (7.0, SAID)], 12.0)
    hls = HlsSource(clip, tmp_path / "hls", port=live_ports.hls, reencode=True).start()
    try:
        stream = _create(http, {"url": hls.url, "window_s": 6, "name": "depot radio"})
        heard = _wait(
            http,
            stream["id"],
            lambda v: any(
                "truck" in (w["transcript"] or "").lower() for w in _windows(http, v["id"])
            ),
            120,
        )
        assert heard["state"] == "live"
        found = http.get(
            "/v1/video/search", params={"q": "refuel truck", "mode": "text", "job_id": stream["id"]}
        ).json()["data"]
        assert found, "the transcript is searched"
        assert {hit["kind"] for hit in found} == {"speech"}
        _stop(http, stream["id"])
    finally:
        hls.stop()


def _ingest_replicas() -> list[str]:
    return [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith("SERVE_REPLICA::vidserve#StreamIngest#")
    ]


def test_a_killed_decoder_replica_s_stream_resumes_on_the_next(
    http: httpx.Client, rtsp: RtspServer, clip: Path
) -> None:
    publisher = rtsp.publisher(clip, "gate").start()
    stream = _create(http, {"url": rtsp.url("gate")})
    try:
        before = _wait(http, stream["id"], lambda v: v["windows"] >= 1, 90)
        (replica,) = _ingest_replicas()
        ray.kill(ray.get_actor(replica, namespace="serve"), no_restart=True)
        killed_at = time.monotonic()
        resumed = _wait(
            http,
            stream["id"],
            lambda v: v["decoder"] not in (None, before["decoder"]) and v["state"] == "live",
            RESUME_BOUND_S,
        )
        took = time.monotonic() - killed_at
        count = resumed["windows"]
        _wait(http, stream["id"], lambda v: v["windows"] >= count + 2, 60)
        print(f"resumed on {resumed['decoder']} {took:.1f} s after the kill")
    finally:
        _stop(http, stream["id"])
        publisher.stop()


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"url": "ftp://cam.example/live"}, "url", "url_not_allowed"),
        ({"url": "https://cdn.example/index.html"}, "url", "invalid_url"),
        ({"url": "rtsp://10.0.0.7/cam"}, "url", "url_not_allowed"),
        ({"url": "rtsp://cam.example/1", "colour": "red"}, "colour", "unknown_parameter"),
        ({"url": "rtsp://cam.example/1", "window_s": 0.1}, "window_s", "invalid_value"),
        (
            {"url": "rtsp://cam.example/1", "rules": [{"name": "a", "question": "Fire?"}] * 2},
            "rules",
            "invalid_value",
        ),
        (
            {"url": "rtsp://cam.example/1", "rules": [{"name": f"r{i}", "question": "Fire?"}
                                                        for i in range(9)]},
            "rules",
            "too_many_rules",
        ),
        (
            {"url": "rtsp://cam.example/1", "webhook": {"url": "https://x.example", "secret": "s"}},
            "webhook.secret",
            "invalid_value",
        ),
    ],
)  # fmt: skip
def test_bad_requests_say_what_is_wrong(
    http: httpx.Client, body: dict[str, Any], param: str, code: str
) -> None:
    answered = http.post("/v1/streams", json=body)
    assert answered.status_code == 400, answered.text
    error = answered.json()["error"]
    assert (error["param"], error["code"]) == (param, code), error


def test_a_webhook_to_a_private_address_is_refused(
    http: httpx.Client, rtsp: RtspServer, internal_server: HTTPServer
) -> None:
    body = {
        "url": rtsp.url("any"),
        "webhook": {"url": internal_server.url_for("/hook"), "secret": "a-shared-secret-16"},
    }
    answered = http.post("/v1/streams", json=body)
    assert answered.status_code == 400, answered.text
    assert answered.json()["error"]["param"] == "webhook.url"
    assert internal_server.log == []


def test_another_keys_stream_is_not_found(serve_url: str, rtsp: RtspServer) -> None:
    base = f"{serve_url}{OLLAMA_ONLY_PREFIX}"
    with httpx.Client(base_url=base, timeout=30) as http:
        mine = {"Authorization": f"Bearer {CONFIG_KEY}"}
        theirs = {"Authorization": f"Bearer {FILE_KEY}"}
        created = http.post("/v1/streams", json={"url": rtsp.url("other")}, headers=mine)
        assert created.status_code == 201, created.text
        stream_id = created.json()["id"]
        try:
            for path in ("", "/windows", "/alerts"):
                seen = http.get(f"/v1/streams/{stream_id}{path}", headers=theirs)
                assert seen.status_code == 404, seen.text
                assert seen.json()["error"]["code"] == "stream_not_found"
            assert http.delete(f"/v1/streams/{stream_id}", headers=theirs).status_code == 404
            listed = http.get("/v1/streams", headers=theirs).json()["data"]
            assert stream_id not in [s["id"] for s in listed]
            assert http.get("/v1/streams").status_code == 401
        finally:
            assert http.delete(f"/v1/streams/{stream_id}", headers=mine).status_code == 200
