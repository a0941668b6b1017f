"""Fault scenarios of the chaos bench (bench/chaos.py --faults), each reported as a row of
requests sent, answered, refused (a 4xx or 503/507 in the JSON shape, which a client can act
on) and lost (a hang, a dropped connection, an answer not in JSON, a job chunk never done):
lost must be 0.

    primary killed         the vLLM replica's process SIGKILLed under load: the fallback answers
                           within backends.assign_timeout_s plus the request's own work
    ingress killed         the Ingress replica killed while a job runs: the job resumes and
                           finishes, each chunk once
    database stopped       PostgreSQL stopped for a while mid-job: 503 store_unavailable while
                           it is down, then the job finishes
    disk filling           the jobs disk filled past jobs.min_free_bytes: new jobs 507, the
                           rest answered; space freed, jobs accepted again
    client holds its share one key holds auth.max_concurrent_per_key requests: its next ones
                           get 429, another key is answered throughout
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.load import (
    LoadClient,
    LoadReport,
    kill_replica,
    run_load,
    sigkill_replica,
    wait_ready,
)
from tests.support.postgres import PostgresServer

KEY_A = "chaos-key-a-0123456789abcdef"
KEY_B = "chaos-key-b-0123456789abcdef"
PER_KEY = 4  # auth.max_concurrent_per_key of the faults app
FLOOR_MARGIN = 300 * 2**20  # jobs.min_free_bytes = free space at start minus this
# A long answer keeps a stream generating (the tiny model otherwise stops early).
LONG_ANSWER = {
    "type": "json_schema",
    "json_schema": {
        "name": "long",
        "schema": {
            "type": "object",
            "properties": {"text": {"type": "string", "minLength": 1500}},
            "required": ["text"],
        },
    },
}


@dataclass
class Row:
    fault: str
    sent: int = 0
    answered: int = 0
    refused: int = 0
    lost: int = 0
    note: str = ""

    def count(self, status: int, json_error: bool = True) -> None:
        self.sent += 1
        if status in (200, 202):
            self.answered += 1
        elif 400 <= status < 600 and status != 500 and json_error:
            self.refused += 1
        else:
            self.lost += 1

    def add(self, report: LoadReport) -> None:
        for outcome in report.outcomes:
            self.count(outcome.status if outcome.status != 299 else -1, outcome.json_error)


def args_for(pg_url: str, data_dir: Path, local_dir: Path) -> dict[str, Any]:
    """The faults app's own settings (merged over the chaos app's)."""
    free = shutil.disk_usage(data_dir).free
    return {
        "auth": {"api_keys": [KEY_A, KEY_B], "max_concurrent_per_key": PER_KEY},
        "store": {"url": pg_url},
        "jobs": {
            "data_dir": str(data_dir),
            "min_free_bytes": max(0, free - FLOOR_MARGIN),
            "lease_s": 6.0,
            "caption_max_tokens": 16,
            "summary_max_tokens": 24,
        },
        "url_fetch": {"local_dir": str(local_dir)},
    }


def _headers(key: str = KEY_B) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def primary_killed(url: str, client: LoadClient, seconds: float = 30.0) -> Row:
    row = Row("primary killed (SIGKILL)")
    killed: list[float] = []

    async def kill() -> None:
        await asyncio.sleep(5.0)
        await asyncio.to_thread(sigkill_replica, "VLLM")
        killed.append(time.monotonic())

    task = asyncio.create_task(kill())
    report = await run_load(
        client, requests=10**6, seconds=seconds, concurrency=4, headers=_headers()
    )
    await task
    row.add(report)
    after = [o.seconds for o in report.outcomes if killed and o.started_at >= killed[0]]
    recovered = await wait_ready(url, 600)
    row.note = (
        f"{len(after)} sent after the kill, slowest {max(after, default=0):.1f} s; "
        f"vLLM back {recovered:.0f} s after the load"
    )
    return row


async def _job(http: httpx.AsyncClient, video: Path, row: Row) -> str:
    created = await http.post(
        "/v1/video/jobs",
        json={"url": video.as_uri(), "task": "captions", "chunk_s": 4, "frames_per_chunk": 1},
    )
    row.count(created.status_code)
    if created.status_code != 202:
        raise RuntimeError(f"the job was not created: {created.text}")
    return str(created.headers["location"])


async def _poll(
    http: httpx.AsyncClient, path: str, row: Row, until: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            response = await http.get(path)
        except httpx.HTTPError:
            row.count(-1)
        else:
            row.count(response.status_code, _json(response))
            if response.status_code == 200 and until(job := response.json()):
                return job
        await asyncio.sleep(0.5)
    raise RuntimeError(f"{path} did not get there within 600 s")


def _json(response: httpx.Response) -> bool:
    try:
        return "error" in response.json()
    except ValueError:
        return False


def _done(job: dict[str, Any], row: Row) -> None:
    progress = job["progress"]
    missing = (progress["chunks_total"] or 0) - progress["chunks_done"] - progress["chunks_failed"]
    row.lost += max(0, missing)
    row.note = (
        f"job {job['state']}: {progress['chunks_done']}/{progress['chunks_total']} chunks, "
        f"{progress['chunks_failed']} failed"
    ) + (f"; {row.note}" if row.note else "")


async def _mid_job(
    url: str, video: Path, row: Row, fault: Callable[[httpx.AsyncClient], Awaitable[str]]
) -> Row:
    async with httpx.AsyncClient(base_url=url, timeout=60, headers=_headers()) as http:
        path = await _job(http, video, row)
        running = await _poll(http, path, row, lambda job: job["progress"]["chunks_done"] >= 2)
        at = f"at chunk {running['progress']['chunks_done']}/{running['progress']['chunks_total']}"
        started = time.monotonic()
        row.note = f"{await fault(http)} {at}"
        job = await _poll(http, path, row, lambda job: job["state"] not in ("queued", "running"))
        row.note += f", finished {time.monotonic() - started:.0f} s later"
        _done(job, row)
        await http.delete(path)  # and its rows go (a finished job)
    return row


async def ingress_killed(url: str, video: Path) -> Row:
    async def fault(http: httpx.AsyncClient) -> str:
        name = await asyncio.to_thread(kill_replica, "Ingress")
        return f"killed {name.rsplit('#', 1)[-1]}"

    return await _mid_job(url, video, Row("ingress killed mid-job"), fault)


async def database_stopped(url: str, video: Path, postgres: PostgresServer) -> Row:
    row = Row("database stopped mid-job")

    async def fault(http: httpx.AsyncClient) -> str:
        await asyncio.to_thread(postgres.stop)
        refused_before = row.refused
        path_list = "/v1/video/jobs"
        for _ in range(8):  # while it is down: JSON 503s, never a hang
            try:
                response = await http.get(path_list)
                row.count(response.status_code, _json(response))
            except httpx.HTTPError:
                row.count(-1)
            await asyncio.sleep(1.0)
        await asyncio.to_thread(postgres.start)
        return f"{row.refused - refused_before} answered 503 while PostgreSQL was down (8 s)"

    return await _mid_job(url, video, row, fault)


async def disk_filling(
    url: str, data_dir: Path, floor: int, upload: bytes, client: LoadClient
) -> Row:
    row = Row("disk filling")
    filler = data_dir / "filler.bin"
    async with httpx.AsyncClient(base_url=url, timeout=120, headers=_headers()) as http:

        async def new_job() -> httpx.Response:
            return await http.post(
                "/v1/video/jobs",
                files={"file": ("v.mp4", upload, "video/mp4")},
                data={"task": "captions"},
            )

        need = shutil.disk_usage(data_dir).free - floor + 64 * 2**20
        with filler.open("wb") as out:
            os.posix_fallocate(out.fileno(), 0, max(need, 1))
        try:
            for _ in range(3):
                response = await new_job()
                row.count(response.status_code, _json(response))
                if response.status_code != 507:
                    row.note = f"expected 507, got {response.status_code} {response.text[:120]}"
            report = await run_load(
                client, requests=8, seconds=60, concurrency=2, headers=_headers()
            )
            row.add(report)
        finally:
            filler.unlink(missing_ok=True)
        response = await new_job()
        row.count(response.status_code, _json(response))
        if response.status_code == 202:
            await http.delete(response.headers["location"])
        row.note = row.note or (
            f"{need / 2**20:.0f} MiB filled: 3 new jobs refused 507, 8 other requests "
            "answered; space freed: the next job accepted"
        )
    return row


async def client_share(url: str, model: str, client: LoadClient) -> Row:
    row = Row("a client holds its share")
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Write at length."}],
        "max_tokens": 2000,
        "stream": True,
        "response_format": LONG_ANSWER,
    }
    async with httpx.AsyncClient(base_url=url, timeout=300, headers=_headers(KEY_A)) as hog:
        opened: list[Any] = []
        for _ in range(PER_KEY):
            stream = hog.stream("POST", "/v1/chat/completions", json=body)
            response = await stream.__aenter__()
            opened.append((stream, response))
        refused = 0
        try:
            for _ in range(5):
                extra = await hog.post(
                    "/v1/chat/completions", json={**body, "stream": False, "max_tokens": 4}
                )
                row.count(extra.status_code, _json(extra))
                refused += extra.status_code == 429
            report = await run_load(
                client, requests=12, seconds=60, concurrency=2, headers=_headers(KEY_B)
            )
            row.add(report)
        finally:
            for stream, _ in opened:
                await stream.__aexit__(None, None, None)
    row.note = (
        f"key A held {PER_KEY} streams: its next 5 requests got {refused} x 429; key B: "
        f"{sum(o.status == 200 for o in report.outcomes)}/{len(report.outcomes)} answered"
    )
    return row


def print_rows(rows: list[Row]) -> None:
    print(f"\n{'fault':<26} | {'sent':>5} | {'answered':>8} | {'refused':>7} | {'lost':>4} | note")
    print("-" * 110)
    for row in rows:
        print(
            f"{row.fault:<26} | {row.sent:>5} | {row.answered:>8} | {row.refused:>7} | "
            f"{row.lost:>4} | {row.note}"
        )


def violations(rows: list[Row]) -> list[str]:
    return [f"{row.fault}: {row.lost} lost ({row.note})" for row in rows if row.lost] + [
        f"{row.fault}: {row.note}" for row in rows if row.note.startswith("expected")
    ]


def to_json(rows: list[Row]) -> str:
    return json.dumps([row.__dict__ for row in rows])
