"""A real Prometheus (Debian's `prometheus` package) for the tests: started on a free port with
the shipped monitoring/prometheus.yml and alert rules, scraping the test Ray's metrics port, and
queried through its HTTP API as Grafana and Alertmanager do."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
ALERTS = MONITORING / "alerts.yml"
INSTALL_HINT = (
    "`make setup-dev` installs Debian's prometheus package (or: apt-get install prometheus, "
    "brew install prometheus)"
)


@dataclass(frozen=True)
class Prometheus:
    url: str
    started: float  # unix time: the start of every range query

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query; fails with Prometheus's own error when `expr` does not evaluate."""
        return self._api("query", {"query": expr})

    def query_range(self, expr: str, step_s: float = 5.0) -> list[dict[str, Any]]:
        """`expr` over the whole run, as a Grafana panel over that time range asks for it."""
        params = {"query": expr, "start": self.started, "end": time.time(), "step": step_s}
        return self._api("query_range", params)

    def total(self, expr: str) -> float:
        result = self.query(f"sum({expr})")
        return float(result[0]["value"][1]) if result else 0.0

    def rules(self) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v1/rules", timeout=10)
        groups = response.json()["data"]["groups"]
        return [rule for group in groups for rule in group["rules"]]

    def _api(self, endpoint: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        body = httpx.get(f"{self.url}/api/v1/{endpoint}", params=params, timeout=30).json()
        if body["status"] != "success":
            raise AssertionError(f"Prometheus refused {params['query']!r}: {body.get('error')}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise TimeoutError(f"Prometheus: not {what} after {timeout_s:.0f}s")


@contextmanager
def run_prometheus(target: str, workdir: Path, scrape_interval_s: int) -> Iterator[Prometheus]:
    """Prometheus with the shipped config, its target and intervals changed for the test."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise FileNotFoundError(f"prometheus is not installed: {INSTALL_HINT}")
    shipped = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    interval = f"{scrape_interval_s}s"
    shipped["global"].update(scrape_interval=interval, evaluation_interval=interval)
    shipped["rule_files"] = [str(ALERTS)]
    shipped["scrape_configs"][0]["static_configs"] = [{"targets": [target]}]
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump(shipped))
    port = free_port()
    with (workdir / "prometheus.log").open("w") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{url}/-/ready", timeout=2).status_code == 200, 30, "ready")
        yield Prometheus(url=url, started=time.time())
    finally:
        process.terminate()
        process.wait(timeout=30)
