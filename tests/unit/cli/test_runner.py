"""`vidserve run`'s own Ray: no dashboard, so no job API (which runs any code it is sent)."""

from __future__ import annotations

from typing import Any

import pytest

from deploy.cli import runner


def test_the_local_ray_starts_without_the_dashboard_and_job_api(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(runner.ray, "init", lambda **kwargs: calls.append(kwargs))
    runner.start_local_ray(num_cpus=4, metrics_port=18080)
    (kwargs,) = calls
    assert kwargs["include_dashboard"] is False
    assert kwargs["address"] == "local"  # never joins another Ray on the machine
