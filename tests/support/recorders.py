"""Plain recorders with the methods of deploy.serving.metrics' Protocols: unit tests read what the
code recorded, where Ray's metrics would export it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class MetricsRecorder:
    in_flight: dict[str, int] = field(default_factory=dict)
    finished_requests: list[tuple[str, int, str | None]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    stages: list[tuple[str, float]] = field(default_factory=list)

    def started(self, route: str) -> None:
        self.in_flight[route] = self.in_flight.get(route, 0) + 1

    def finished(self, route: str, status: int, backend: str | None, seconds: float) -> None:
        self.in_flight[route] -= 1
        self.finished_requests.append((route, status, backend))
        self.latencies.append(seconds)

    def stage(self, stage: str, seconds: float) -> None:
        self.stages.append((stage, seconds))


class StreamMetricsRecorder:
    """The StreamMetrics a stream watcher records (deploy/streams/watcher.py), as lists."""

    def __init__(self) -> None:
        self.windows: list[str] = []
        self.lags: list[float] = []
        self.reconnects = 0
        self.alerts = 0
        self.deliveries: list[str] = []

    def streams(self, by_state: dict[str, int], decoding: int) -> None:
        del by_state, decoding

    def window(self, outcome: str, lag_s: float | None = None) -> None:
        self.windows.append(outcome)
        if lag_s is not None:
            self.lags.append(lag_s)

    def reconnected(self) -> None:
        self.reconnects += 1

    def alert(self) -> None:
        self.alerts += 1

    def delivery(self, outcome: str) -> None:
        self.deliveries.append(outcome)
