"""The monitoring shipped in monitoring/, proven against the real Prometheus (Debian's package).

promtool checks the scrape config and the alert rules. A real Prometheus
(tests/support/prometheus.py, started by conftest before the app) scrapes the test Ray's metrics
port for the whole session; this module runs last (conftest orders it), after the fault tests,
and sends its own success, error, streaming, download and cache-hit traffic. Then every Grafana
panel query runs over the session's time range, as Grafana would draw it, and every alert
expression runs as Prometheus's rule evaluation does: each must evaluate, and each panel for an
exercised path must have data.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
from typing import Any

import httpx
import pytest
import yaml
from pytest_httpserver import HTTPServer

from tests.integration.conftest import Media
from tests.support.prometheus import ALERTS, INSTALL_HINT, MONITORING, Prometheus, wait_for

DASHBOARD = MONITORING / "grafana" / "dashboards" / "vidserve.json"
DATA_TIMEOUT_S = 90.0
# Grafana's variables, as a user viewing every application would have them.
VARIABLES = {"$application": ".*", "$__rate_interval": "1m"}
# Panels whose path the test session may legitimately not exercise, and why.
MAY_BE_EMPTY = {
    # Requests wait at a handle only when every replica is at max_ongoing_requests.
    "Queued at handles": "no request queued at a handle",
}
FALLBACK_PANEL = "Fallbacks by reason"  # filled when test_failover ran in the session
# Filled when the live-stream tests ran in the session (tests/integration/test_stream*.py).
STREAM_PANELS = (
    "Streams by state",
    "Stream windows per second (dropped: the model fell behind)",
    "Lag behind real time p50 / p95",
    "Reconnects, alerts and webhooks per second",
)
CACHE_HITS = 'ray_vidserve_frame_cache_lookups_total{result="hit"}'
RANGE_STEP_S = 2.0
IDLE_S = 30.0  # more than two of Ray's metric export intervals (10 s)
# extract_audio and transcribe: the speech track (tests/integration/test_speech.py sends speech).
STAGES = {
    "upload",
    "download",
    "extract_queue",
    "extract",
    "inference",
    "extract_audio",
    "transcribe",
}


def test_promtool_accepts_the_shipped_config_and_rules() -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None, f"promtool is not installed: {INSTALL_HINT}"
    for args in (
        ["check", "config", str(MONITORING / "prometheus.yml")],
        ["check", "rules", str(ALERTS)],
    ):
        checked = subprocess.run([promtool, *args], capture_output=True, text=True, check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.fixture(scope="module")
def prom(prometheus: Prometheus | None) -> Prometheus:
    if prometheus is None:
        pytest.fail(f"prometheus is not installed: {INSTALL_HINT}")
    return prometheus


def _with_variables(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def _panels() -> list[dict[str, Any]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [panel for panel in dashboard["panels"] if panel["type"] != "row"]


def _alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _send_round(client: httpx.Client, media: Media, clip_url: str, stream: bool) -> int:
    """An upload (the same video each time: cache hits after the first), a request without a
    video (400) and a chat completion with the video by URL (download); returns how many."""
    ok = client.post(
        "/v1/video/analyze",
        files={"file": ("c.mp4", media.video, "video/mp4")},
        data={"prompt": "What happens?", "num_frames": "4", "max_tokens": "4"},
    )
    assert ok.status_code == 200, ok.text
    bad = client.post("/v1/video/analyze", data={"prompt": "no video"})
    assert bad.status_code == 400, bad.text
    video = {"type": "video_url", "video_url": {"url": clip_url}}
    by_url = client.post(
        "/v1/chat/completions",
        json={
            "model": "tiny-qwen2.5-vl",
            "max_tokens": 4,
            "stream": stream,
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "What happens?"}, video]}
            ],
        },
    )
    assert by_url.status_code == 200, by_url.text
    return 3


def _stages_seen(prom: Prometheus) -> set[str]:
    result = prom.query("sum by (stage) (ray_vidserve_stage_seconds_count)")
    return {series["metric"]["stage"] for series in result}


@pytest.fixture(scope="module")
def traffic(prom: Prometheus, client: httpx.Client, media: Media, media_server: HTTPServer) -> int:
    """Traffic in two phases. Ray exports a replica's metrics every few seconds, and a series
    first seen with all its counts has no increase for rate() to show: the first phase makes
    every series exist in Prometheus (cache hits included: the second round asks about the same
    videos again), the second moves them. Returns the requests sent."""
    clip_url = media_server.url_for("/media/clip")
    sent = sum(_send_round(client, media, clip_url, stream) for stream in (True, False))
    wait_for(lambda: _stages_seen(prom) >= STAGES, DATA_TIMEOUT_S, f"showing stages {STAGES}")
    for series in ("ray_vllm_time_to_first_token_seconds_bucket", CACHE_HITS):
        wait_for(lambda s=series: bool(prom.query(s)), DATA_TIMEOUT_S, f"showing {series}")
    before = prom.total("ray_vidserve_requests_total")
    later = sum(_send_round(client, media, clip_url, stream=False) for _ in range(2))
    wait_for(
        lambda: prom.total("ray_vidserve_requests_total") >= before + later,
        DATA_TIMEOUT_S,
        f"showing the {later} requests of the second phase",
    )
    time.sleep(RANGE_STEP_S)  # the last point of a range query lies after the increase
    return sent + later


def test_every_alert_rule_is_loaded_and_evaluates(prom: Prometheus, traffic: int) -> None:
    rules = _alert_rules()
    for rule in rules:
        prom.query(rule["expr"])  # parses and evaluates now
    assert {rule["name"] for rule in prom.rules()} == {rule["alert"] for rule in rules}
    wait_for(
        lambda: all(rule.get("health") == "ok" for rule in prom.rules()),
        30,
        "evaluating every rule without error",
    )


def _has_data(prom: Prometheus, panel: dict[str, Any]) -> bool:
    return any(
        not math.isnan(float(value))
        for target in panel["targets"]
        for series in prom.query_range(_with_variables(target["expr"]), RANGE_STEP_S)
        for _, value in series["values"]
    )


def test_every_dashboard_panel_returns_data(
    prom: Prometheus, traffic: int, request: pytest.FixtureRequest
) -> None:
    may_be_empty = dict(MAY_BE_EMPTY)
    if not any("test_failover" in item.nodeid for item in request.session.items):
        may_be_empty[FALLBACK_PANEL] = "the fault tests did not run in this session"
    if not any("test_stream" in item.nodeid for item in request.session.items):
        may_be_empty.update(dict.fromkeys(STREAM_PANELS, "no stream test ran in this session"))
    empty = [
        panel["title"]
        for panel in _panels()
        if not _has_data(prom, panel) and panel["title"] not in may_be_empty
    ]
    assert not empty, f"panels without data: {empty}"


def test_the_metrics_count_what_was_sent(prom: Prometheus, traffic: int) -> None:
    by_route = {
        (s["metric"]["route"], s["metric"]["status_class"]): float(s["value"][1])
        for s in prom.query("sum by (route, status_class) (ray_vidserve_requests_total)")
    }
    assert by_route[("analyze", "2xx")] >= 3
    assert by_route[("analyze", "4xx")] >= 3
    assert by_route[("chat", "2xx")] >= 3
    assert _stages_seen(prom) == STAGES
    assert prom.total(CACHE_HITS) >= 3
    names = prom.query("count by (__name__) ({__name__=~'ray_vidserve_.*'})")
    assert {s["metric"]["__name__"] for s in names} >= {
        "ray_vidserve_requests_total",
        "ray_vidserve_request_seconds_bucket",
        "ray_vidserve_requests_in_flight",
        "ray_vidserve_stage_seconds_bucket",
        "ray_vidserve_backend_requests_total",
        "ray_vidserve_frames_extracted_total",
        "ray_vidserve_video_seconds_processed_total",
        "ray_vidserve_media_bytes_processed_total",
        "ray_vidserve_frame_cache_lookups_total",
        "ray_vidserve_frame_cache_bytes",
    }


def test_gauges_stay_reported_while_replicas_are_idle(prom: Prometheus, traffic: int) -> None:
    """Ray drops a gauge value not set again within two export intervals (~20 s); vidserve
    re-reports its gauges (deploy/serving/metrics.py keep_reporting), so an idle extractor still
    shows its cache size and an idle ingress zero requests in flight."""
    time.sleep(IDLE_S)
    for gauge in ("ray_vidserve_frame_cache_bytes", "ray_vidserve_requests_in_flight"):
        assert prom.query(gauge), f"{gauge} vanished after {IDLE_S}s without traffic"
    assert prom.total("ray_vidserve_frame_cache_bytes") > 0
