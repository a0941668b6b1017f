"""`vidserve summarize FILE_OR_URL [--task chapters]`: a long-video job on a running vidserve.

A local file is uploaded (a progress bar on stderr), a URL sent as it is; then the job's events
are followed: a progress bar over chunks, each chapter printed as the result arrives (or the
summary, or the captions). `--json` prints the finished job as JSON instead. Ctrl-C cancels the
job on the server. Exit codes as `vidserve analyze`: 0 done, 1 the server refused or the job
failed, 2 no such file, 3 server unreachable.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import httpx

from deploy.cli.analyze import (
    EXIT_INPUT,
    EXIT_OK,
    EXIT_SERVER,
    ClientError,
    _raise_for_error,
    unreachable,
)
from deploy.jobs.plan import timestamp as clock


@dataclass(frozen=True)
class Job:
    server: str
    source: str
    task: str = "chapters"
    api_key: str | None = None
    chunk_s: float | None = None
    frames_per_chunk: int | None = None
    as_json: bool = False


def _fields(job: Job) -> dict[str, str]:
    fields = {"task": job.task}
    if job.chunk_s is not None:
        fields["chunk_s"] = str(job.chunk_s)
    if job.frames_per_chunk is not None:
        fields["frames_per_chunk"] = str(job.frames_per_chunk)
    return fields


def submit(client: httpx.Client, job: Job, err: IO[str]) -> dict[str, Any]:
    if job.source.startswith(("http://", "https://", "file://")):
        response = client.post("/v1/video/jobs", json={"url": job.source, **_fields(job)})
    else:
        path = Path(job.source).expanduser()
        if not path.is_file():
            raise ClientError(f"no such file: {job.source}", EXIT_INPUT)
        with path.open("rb") as handle, ProgressReader(handle, path.stat().st_size, err) as body:
            response = client.post(
                "/v1/video/jobs",
                files={"file": (path.name, cast(IO[bytes], body), "application/octet-stream")},
                data=_fields(job),
            )
    _raise_for_error(response)
    created: dict[str, Any] = response.json()
    return created


class ProgressReader:
    """A file whose reads move an upload progress bar."""

    def __init__(self, handle: Any, size: int, err: IO[str]) -> None:
        from tqdm import tqdm

        self._handle = handle
        self._bar = tqdm(total=size, unit="B", unit_scale=True, desc="upload", file=err,
                         leave=False)  # fmt: skip

    def __enter__(self) -> ProgressReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.close()

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._handle.read(size)
        self._bar.update(len(data))
        return data


def events(client: httpx.Client, job_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
    with client.stream("GET", f"/v1/video/jobs/{job_id}/events", timeout=None) as response:
        _raise_for_error(response)
        name = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                if name == "done":
                    return
                yield name, json.loads(line.removeprefix("data: "))


def follow(client: httpx.Client, job_id: str, out: IO[str], err: IO[str]) -> dict[str, Any]:
    """The job's events until it finishes: a bar over chunks; the finished job."""
    from tqdm import tqdm

    bar = tqdm(unit="chunk", desc="chunks", file=err, leave=False)
    try:
        for name, data in events(client, job_id):
            if name == "chunk":
                bar.total = data["progress"]["chunks_total"]
                bar.update(1)
            elif name == "result":
                return data
            elif name == "error":
                raise ClientError(f"vidserve: {data['error']['message']}", EXIT_SERVER)
    finally:
        bar.close()
    raise ClientError("vidserve: the event stream ended before the job finished", EXIT_SERVER)


def render(job: dict[str, Any], out: IO[str]) -> None:
    result = job.get("result") or {}
    for chapter in result.get("chapters", []):
        out.write(f"[{clock(chapter['start_s'])}-{clock(chapter['end_s'])}] {chapter['title']}\n")
        out.write(f"    {chapter['summary']}\n")
    for caption in result.get("captions", []):
        out.write(f"[{clock(caption['start_s'])}-{clock(caption['end_s'])}] {caption['text']}\n")
    if result.get("summary"):
        out.write(f"\n{result['summary']}\n")
    for failed in result.get("failed_chunks", []):
        out.write(
            f"(chunk {failed['index']} at {clock(failed['start_s'])} failed: "
            f"{failed['error']['message']})\n"
        )


def run(job: Job, out: IO[str] = sys.stdout, err: IO[str] = sys.stderr) -> int:
    headers = {"Authorization": f"Bearer {job.api_key}"} if job.api_key else {}
    job_id = None
    try:
        with httpx.Client(base_url=job.server, headers=headers, timeout=600) as client:
            try:
                job_id = submit(client, job, err)["id"]
                err.write(f"job {job_id} ({job.task})\n")
                finished = follow(client, job_id, out, err)
            except KeyboardInterrupt:
                if job_id is not None:
                    client.delete(f"/v1/video/jobs/{job_id}")
                    err.write(f"cancelled job {job_id}\n")
                return EXIT_SERVER
    except ClientError as exc:
        err.write(f"{exc}\n")
        return exc.code
    except httpx.TransportError as exc:
        return unreachable(job.server, exc, err)
    if job.as_json:
        out.write(json.dumps(finished, indent=2) + "\n")
    else:
        render(finished, out)
    if finished["state"] != "succeeded":
        error = finished.get("error") or {}
        err.write(f"vidserve: the job {finished['state']}: {error.get('message', '')}\n")
        return EXIT_SERVER
    return EXIT_OK
