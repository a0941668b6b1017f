"""Alerts from a live stream on the real engine: an app of its own serves a tiny Qwen2.5-VL
steered to say "yes" (deploy/dev/tiny_model.py --says), so a yes/no rule asked of every window
by vLLM's guided choice answers yes. The rule fires once after its `consecutive` windows and
stays quiet while the answers stay yes; the alert reaches a webhook on loopback, whose first
answer is a 500 (retried with backoff), signed with the stream's secret and verified here; it
comes as an SSE event; the steered captions are found by search like a video's."""

from __future__ import annotations

import copy
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from deploy.cli import runner
from deploy.config.serve_config import merge, validate
from deploy.dev.tiny_model import ensure_tiny_model
from deploy.streams.webhook import SIGNATURE_HEADER, verify
from tests.integration.conftest import START_TIMEOUT_S, LivePorts
from tests.support.live import RtspServer

APP, PREFIX = "vidserve-alerts", "/alerts"
SECRET = "the-webhook-shared-secret"
CONSECUTIVE = 2


@pytest.fixture(scope="module")
def alerts_url(
    serve_url: str, deployed_config: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    cache = Path(os.environ.get("VIDSERVE_TEST_CACHE", Path.home() / ".cache" / "vidserve"))
    model = ensure_tiny_model(cache / "tiny-qwen2.5-vl-says-yes", says="yes")
    app = copy.deepcopy(deployed_config["applications"][0])
    app.update(name=APP, route_prefix=PREFIX)
    app["args"] = merge(
        app["args"],
        {
            "llm": {"model": str(model), "model_id": "tiny-says-yes"},
            "backends": {"fallback": "none"},
            "speech": {"enabled": False},
            "search": {"semantic": False},
            "jobs": {"data_dir": str(tmp_path_factory.mktemp("alerts-data"))},
        },
    )
    dropped = {"Transcriber", "Embedder", "Ollama"}
    app["deployments"] = [d for d in app["deployments"] if d["name"] not in dropped]
    with_alerts = {**deployed_config, "applications": [*deployed_config["applications"], app]}
    validate(with_alerts)
    runner.deploy(with_alerts)
    try:
        runner.wait_until_running(START_TIMEOUT_S, progress=print, app=APP)
        yield f"{serve_url}{PREFIX}"
    finally:
        runner.deploy(deployed_config)  # the session's apps as they were, without this one


class Hook:
    """A webhook receiver that answers 500 to the first delivery and 200 after."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self._lock = threading.Lock()

    def __call__(self, request: Request) -> Response:
        with self._lock:
            self.received.append((dict(request.headers), request.get_data()))
            first = len(self.received) == 1
        return Response("try again", status=500) if first else Response("ok", status=200)


@pytest.fixture
def hook(live_ports: LivePorts) -> Iterator[tuple[HTTPServer, Hook]]:
    server = HTTPServer(host="127.0.0.1", port=live_ports.webhook)
    receiver = Hook()
    server.expect_request("/hooks/vidserve", method="POST").respond_with_handler(receiver)
    server.start()
    yield server, receiver
    server.stop()


def _until(check: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout_s:g} s")


def test_a_rule_fires_once_and_its_signed_webhook_is_retried_until_received(
    alerts_url: str, rtsp: RtspServer, clip: Path, hook: tuple[HTTPServer, Hook]
) -> None:
    server, receiver = hook
    publisher = rtsp.publisher(clip, "warehouse").start()
    body = {
        "url": rtsp.url("warehouse"),
        "name": "warehouse",
        "rules": [{"name": "smoke", "question": "Is there smoke?", "consecutive": CONSECUTIVE}],
        "webhook": {"url": server.url_for("/hooks/vidserve"), "secret": SECRET},
    }
    with httpx.Client(base_url=alerts_url, timeout=60) as http:
        created = http.post("/v1/streams", json=body)
        assert created.status_code == 201, created.text
        stream_id = created.json()["id"]
        assert "secret" not in created.text
        try:
            alerts = _until(
                lambda: http.get(f"/v1/streams/{stream_id}/alerts").json()["data"], 90, "an alert"
            )
            windows = http.get(f"/v1/streams/{stream_id}/windows").json()["data"]
            (alert,) = alerts
            assert alert["rule"] == "smoke"
            assert alert["question"] == "Is there smoke?"
            # Fired by the window that made the run of yeses CONSECUTIVE long.
            assert alert["window"] == windows[CONSECUTIVE - 1]["index"], (alert, windows)
            _until(lambda: len(receiver.received) >= 2, 30, "the webhook retried")
            delivered = _until(
                lambda: (
                    http.get(f"/v1/streams/{stream_id}/alerts").json()["data"][0]["delivery"]
                    == "delivered"
                ),
                30,
                "delivered",
            )
            assert delivered
            # Every delivery signed with the stream's secret; a wrong secret does not verify.
            for headers, raw in receiver.received:
                assert verify(SECRET, headers[SIGNATURE_HEADER], raw)
                assert not verify("another-secret-of-16", headers[SIGNATURE_HEADER], raw)
                assert json.loads(raw)["alert"]["id"] == alert["id"]
            # The answers stay yes: more windows, no second alert (deduplicated).
            count = len(windows)
            _until(
                lambda: (
                    len(http.get(f"/v1/streams/{stream_id}/windows").json()["data"]) >= count + 3
                ),
                60,
                "three more windows",
            )
            assert len(http.get(f"/v1/streams/{stream_id}/alerts").json()["data"]) == 1
            view = http.get(f"/v1/streams/{stream_id}").json()
            assert view["rules"]["smoke"]["active"] is True
            assert view["rules"]["smoke"]["run"] >= CONSECUTIVE + 3
            assert len(receiver.received) == 2
            # The steered captions are searched like any video's.
            caption = windows[0]["text"].split()[0]
            found = http.get("/v1/video/search", params={"q": caption, "mode": "text"})
            assert stream_id in {hit["job_id"] for hit in found.json()["data"]}, found.text
        finally:
            http.delete(f"/v1/streams/{stream_id}")
            publisher.stop()
        with http.stream("GET", f"/v1/streams/{stream_id}/events") as events:
            names = [line for line in events.iter_lines() if line.startswith("event: ")]
        assert names.count("event: alert") == 1
        assert names[-1] == "event: done"
