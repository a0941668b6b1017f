"""Bounded mixed load against a running vidserve, and the faults to inject while it runs: used by
the chaos test (tests/e2e/test_chaos.py) and the chaos and soak benchmark (bench/chaos.py).

Every request has a bound (the client's timeout): a request that reaches it is a hang, the one
outcome that is never acceptable. Every answer is checked: a 200, or an error in the JSON shape.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import httpx
import psutil
import ray

from tests.support.videos import encode_index, write_h264

KINDS = ("analyze_video", "analyze_image", "chat_text", "chat_video_stream")


@dataclass
class Outcome:
    kind: str
    status: int  # 0: no answer within the bound (a hang), -1: the connection failed
    seconds: float
    json_error: bool = True  # an error answered in the JSON shape (True for a 200)
    detail: str = ""
    started_at: float = 0.0  # time.monotonic() when it was sent


@dataclass
class LoadReport:
    outcomes: list[Outcome] = field(default_factory=list)

    def by_status(self) -> Counter[int]:
        return Counter(o.status for o in self.outcomes)

    def percentile(self, q: float) -> float:
        values = sorted(o.seconds for o in self.outcomes if o.status > 0)
        if not values:
            return 0.0
        return values[min(len(values) - 1, round(q * (len(values) - 1)))]

    def problems(self, allowed: set[int]) -> list[Outcome]:
        """Answers that break the rule: a hang, a status not allowed, an error not in JSON."""
        return [
            o
            for o in self.outcomes
            if o.status not in allowed or (o.status != 200 and not o.json_error)
        ]

    def summary(self) -> str:
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(self.by_status().items()))
        return (
            f"{len(self.outcomes)} requests ({statuses}); p50 {self.percentile(0.5):.2f} s, "
            f"p99 {self.percentile(0.99):.2f} s"
        )


@dataclass(frozen=True)
class Media:
    video: bytes
    image: bytes

    @classmethod
    def make(cls, directory: Path) -> Media:
        video = write_h264(directory / "load.mp4", 60, 30.0, (320, 240), gop=30).read_bytes()
        ok, png = cv2.imencode(".png", encode_index(7, 224, 224))
        if not ok:
            raise RuntimeError("could not encode the test image")
        return cls(video, png.tobytes())


class LoadClient:
    """One of each kind of request, by turns; `model` is the served model id."""

    def __init__(self, url: str, model: str, media: Media, bound_s: float) -> None:
        self._url = url
        self._model = model
        self._media = media
        self._bound_s = bound_s
        self._video_url = "data:video/mp4;base64," + base64.b64encode(media.video).decode()

    async def one(self, client: httpx.AsyncClient, kind: str) -> Outcome:
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._bound_s):
                status, body = await getattr(self, f"_{kind}")(client)
        except TimeoutError:
            took = time.monotonic() - started
            return Outcome(kind, 0, took, False, "no answer within bound", started)
        except httpx.HTTPError as exc:
            return Outcome(kind, -1, time.monotonic() - started, False, repr(exc), started)
        seconds = time.monotonic() - started
        if status == 200:
            return Outcome(kind, status, seconds, started_at=started)
        return Outcome(kind, status, seconds, _is_json_error(body), body[:300], started)

    async def _analyze_video(self, client: httpx.AsyncClient) -> tuple[int, str]:
        response = await client.post(
            f"{self._url}/v1/video/analyze",
            files={"file": ("v.mp4", self._media.video, "video/mp4")},
            data={"prompt": "What happens?", "num_frames": "4", "max_tokens": "8"},
        )
        return response.status_code, response.text

    async def _analyze_image(self, client: httpx.AsyncClient) -> tuple[int, str]:
        response = await client.post(
            f"{self._url}/v1/video/analyze",
            files={"image": ("i.png", self._media.image, "image/png")},
            data={"prompt": "What is this?", "max_tokens": "8"},
        )
        return response.status_code, response.text

    async def _chat_text(self, client: httpx.AsyncClient) -> tuple[int, str]:
        body = {
            "model": self._model,
            "messages": [{"role": "user", "content": "Say hello."}],
            "max_tokens": 8,
        }
        response = await client.post(f"{self._url}/v1/chat/completions", json=body)
        return response.status_code, response.text

    async def _chat_video_stream(self, client: httpx.AsyncClient) -> tuple[int, str]:
        """A stream counts as answered when it ends with [DONE] (an error event before it is
        the JSON-shaped end of a stream that failed midway)."""
        body = {
            "model": self._model,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "video_url", "video_url": {"url": self._video_url}},
                        {"type": "text", "text": "Describe it."},
                    ],
                }
            ],
            "max_tokens": 8,
            "stream": True,
            "video_options": {"num_frames": 4},
        }
        async with client.stream("POST", f"{self._url}/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                return response.status_code, (await response.aread()).decode(errors="replace")
            lines = [line async for line in response.aiter_lines() if line.startswith("data: ")]
        if not lines or lines[-1] != "data: [DONE]":
            return 299, "the stream ended without [DONE]"  # not an allowed status
        errors = [line for line in lines if line.startswith('data: {"error"')]
        return (200, "") if not errors else (200, errors[0])


def _is_json_error(text: str) -> bool:
    try:
        error = json.loads(text)["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return isinstance(error, dict) and "message" in error and "code" in error


async def run_load(
    client: LoadClient,
    *,
    requests: int,
    seconds: float,
    concurrency: int,
    on_progress: Callable[[LoadReport], None] | None = None,
    headers: dict[str, str] | None = None,
) -> LoadReport:
    """At most `requests` requests and at most `seconds` of sending, `concurrency` at a time,
    the kinds by turns. Requests in flight at the deadline are still awaited (within their
    bound): none is abandoned."""
    report = LoadReport()
    deadline = time.monotonic() + seconds
    counter = iter(range(requests))

    async def worker(http: httpx.AsyncClient) -> None:
        for number in counter:
            if time.monotonic() > deadline:
                return
            report.outcomes.append(await client.one(http, KINDS[number % len(KINDS)]))
            if on_progress is not None and len(report.outcomes) % 20 == 0:
                on_progress(report)

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=None, limits=limits, headers=headers) as http:
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
    return report


# --- faults --------------------------------------------------------------------------------


def replica_actors(deployment: str, app: str = "vidserve") -> list[str]:
    """Names of the live replica actors of `deployment` (Serve's namespace)."""
    prefix = f"SERVE_REPLICA::{app}#{deployment}#"
    return [
        actor["name"]
        for actor in ray.util.list_named_actors(all_namespaces=True)
        if actor["name"].startswith(prefix)
    ]


def sigkill_replica(deployment: str, app: str = "vidserve") -> str:
    """SIGKILL one replica's process (as the OOM killer does): not even Ray is told first."""
    names = replica_actors(deployment, app)
    if not names:
        raise RuntimeError(f"no live replica of {deployment}")
    actor = ray.get_actor(names[0], namespace="serve")
    pid: int = ray.get(actor.__ray_call__.remote(lambda _: os.getpid()), timeout=60)
    os.kill(pid, signal.SIGKILL)
    return names[0]


def kill_replica(deployment: str, app: str = "vidserve") -> str:
    """Kill one replica of `deployment` as a crash would (no graceful shutdown); Serve's
    controller notices and starts another."""
    names = replica_actors(deployment, app)
    if not names:
        raise RuntimeError(f"no live replica of {deployment}")
    ray.kill(ray.get_actor(names[0], namespace="serve"), no_restart=True)
    return names[0]


def replica_rss() -> dict[str, int]:
    """Resident memory of each Serve replica process (and the controller) on this machine, by
    `<deployment> pid <pid>` (from the process title `ray::ServeReplica:<app>:<deployment>`)."""
    sizes: dict[str, int] = {}
    for process in psutil.process_iter(["pid", "cmdline", "memory_info"]):
        cmdline = process.info.get("cmdline") or []
        title = cmdline[0] if cmdline else ""
        if title.startswith("ray::ServeReplica:") or title.startswith("ray::ServeController"):
            deployment = title.removeprefix("ray::").split(".")[0].rsplit(":", 1)[-1]
            sizes[f"{deployment} pid {process.info['pid']}"] = process.info["memory_info"].rss
    return sizes


async def wait_ready(url: str, timeout_s: float, backend: str = "vllm") -> float:
    """Seconds until /readyz says `backend` is ready again."""
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=5) as http:
        while time.monotonic() - started < timeout_s:
            try:
                body: dict[str, Any] = (await http.get(f"{url}/readyz")).json()
                if body.get("backends", {}).get(backend, {}).get("ready"):
                    return time.monotonic() - started
            except (httpx.HTTPError, ValueError):
                pass
            await asyncio.sleep(1)
    raise TimeoutError(f"{backend} was not ready again within {timeout_s:.0f} s")


def median_or_zero(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0
