"""The Grafana dashboard's structure: what Grafana needs to import it anywhere (the queries
themselves run against a real Prometheus in tests/integration/test_monitoring.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "monitoring" / "grafana" / "dashboards" / "vidserve.json"
ALERTS = ROOT / "monitoring" / "alerts.yml"
# What issue 6 asks the dashboard to show, as metric names its panels must query.
REQUIRED_METRICS = {
    "ray_vidserve_requests_total",
    "ray_vidserve_request_seconds_bucket",
    "ray_vidserve_stage_seconds_bucket",
    "ray_vidserve_backend_requests_total",
    "ray_vidserve_fallbacks_total",
    "ray_vidserve_frames_extracted_total",
    "ray_vidserve_frame_cache_lookups_total",
    "ray_serve_deployment_replica_healthy",
    "ray_serve_autoscaling_target_replicas",
    "ray_vllm_generation_tokens_total",
    "ray_vllm_time_to_first_token_seconds_bucket",
    "ray_vllm_kv_cache_usage_perc",
}


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def _panels() -> list[dict[str, Any]]:
    return [p for p in _dashboard()["panels"] if p["type"] != "row"]


def test_every_panel_uses_the_datasource_variable_not_a_fixed_uid() -> None:
    variables = {v["name"]: v for v in _dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in _panels():
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_panel_ids_are_unique_and_every_query_filters_by_application() -> None:
    ids = [p["id"] for p in _dashboard()["panels"]]
    assert len(ids) == len(set(ids))
    for panel in _panels():
        for target in panel["targets"]:
            for selector in re.findall(r"\b(ray_\w+)(\{[^}]*\})?", target["expr"]):
                assert 'application=~"$application"' in selector[1], (panel["title"], selector)


def test_the_dashboard_shows_every_asked_for_signal() -> None:
    queried = {
        name
        for panel in _panels()
        for target in panel["targets"]
        for name in re.findall(r"\b(ray_\w+)", target["expr"])
    }
    assert queried >= REQUIRED_METRICS, REQUIRED_METRICS - queried


def test_every_alert_has_a_severity_a_summary_and_a_duration() -> None:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len({rule["alert"] for rule in rules}) == len(rules)
    for rule in rules:
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
