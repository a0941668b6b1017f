"""`vidserve analyze FILE_OR_URL --prompt ...`: a client of a running vidserve.

It speaks the service's OpenAI-compatible `POST /v1/chat/completions`: a local file goes as a
data URL (an upload progress bar on stderr while the body is sent), a URL as it is (the server
fetches it); the answer is printed as it streams in, or, with `--json`, the whole response as
JSON. The server's errors are printed as it sent them (status, code, message).
Exit codes: 0 answered, 1 the server refused or failed, 2 no such file, 3 server unreachable.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from deploy.core.messages import MediaKind
from deploy.video.container import sniff

EXIT_OK, EXIT_SERVER, EXIT_INPUT, EXIT_UNREACHABLE = 0, 1, 2, 3
CHUNK = 256 * 1024
MIME = {
    "mp4": "video/mp4",
    "mov": "video/quicktime",
    "matroska": "video/webm",
    "avi": "video/x-msvideo",
}


@dataclass(frozen=True)
class Request:
    server: str
    source: str
    prompt: str
    api_key: str | None = None
    model: str | None = None
    num_frames: int | None = None
    max_tokens: int | None = None
    as_json: bool = False


class ClientError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def media_part(source: str) -> dict[str, Any]:
    """The chat content part for a URL or a local file (read, sniffed, base64-encoded)."""
    if source.startswith(("http://", "https://", "file://", "data:")):
        return {"type": "video_url", "video_url": {"url": source}}
    path = Path(source).expanduser()
    if not path.is_file():
        raise ClientError(f"no such file: {source}", EXIT_INPUT)
    data = path.read_bytes()
    kind = sniff(data[:512])
    if kind.kind is None:
        raise ClientError(f"{source} is not a video or an image ({kind.format})", EXIT_INPUT)
    encoded = base64.b64encode(data).decode("ascii")
    if kind.kind is MediaKind.IMAGE:
        url = f"data:image/{kind.format};base64,{encoded}"
        return {"type": "image_url", "image_url": {"url": url}}
    url = f"data:{MIME.get(kind.format, 'video/mp4')};base64,{encoded}"
    return {"type": "video_url", "video_url": {"url": url}}


def body(request: Request, model: str) -> dict[str, Any]:
    content = [{"type": "text", "text": request.prompt}, media_part(request.source)]
    payload: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "stream": not request.as_json,
    }
    if not request.as_json:
        payload["stream_options"] = {"include_usage": True}
    if request.max_tokens is not None:
        payload["max_tokens"] = request.max_tokens
    if request.num_frames is not None:
        payload["video_options"] = {"num_frames": request.num_frames}
    return payload


def _uploading(data: bytes, progress: IO[str]) -> Iterator[bytes]:
    from tqdm import tqdm

    with tqdm(
        total=len(data), unit="B", unit_scale=True, desc="upload", file=progress, leave=False
    ) as bar:
        for start in range(0, len(data), CHUNK):
            chunk = data[start : start + CHUNK]
            bar.update(len(chunk))
            yield chunk


def _error_text(response: httpx.Response) -> str:
    try:
        error = response.json().get("error", {})
    except ValueError:
        return f"{response.status_code}: {response.text[:500]}"
    code = error.get("code") or error.get("type") or ""
    return f"{response.status_code} {code}: {error.get('message', response.text[:500])}"


def run(request: Request, out: IO[str] = sys.stdout, err: IO[str] = sys.stderr) -> int:
    headers = {"Authorization": f"Bearer {request.api_key}"} if request.api_key else {}
    try:
        with httpx.Client(base_url=request.server, headers=headers, timeout=600) as client:
            model = request.model or _served_model(client)
            data = json.dumps(body(request, model)).encode()
            stream = client.stream(
                "POST",
                "/v1/chat/completions",
                content=_uploading(data, err),
                headers={"Content-Type": "application/json", "Content-Length": str(len(data))},
            )
            with stream as response:
                _raise_for_error(response)
                if request.as_json:
                    out.write(json.dumps(json.loads(response.read()), indent=2) + "\n")
                else:
                    _print_stream(response, out, err)
    except ClientError as exc:
        err.write(f"{exc}\n")
        return exc.code
    except httpx.TransportError as exc:
        return unreachable(request.server, exc, err)
    return EXIT_OK


def unreachable(server: str, exc: Exception, err: IO[str]) -> int:
    err.write(
        f"vidserve: cannot reach {server} ({exc}); start the service (`make run`) "
        "or point --server / VIDSERVE_URL at it\n"
    )
    return EXIT_UNREACHABLE


def _raise_for_error(response: httpx.Response) -> None:
    if response.status_code >= 400:
        response.read()
        raise ClientError(f"vidserve: {_error_text(response)}", EXIT_SERVER)


def _served_model(client: httpx.Client) -> str:
    response = client.get("/v1/models")
    _raise_for_error(response)
    models = response.json()["data"]
    if not models:
        raise ClientError("vidserve: the service lists no model", EXIT_SERVER)
    model: str = models[0]["id"]
    return model


def _print_stream(response: httpx.Response, out: IO[str], err: IO[str]) -> None:
    usage = None
    for line in response.iter_lines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        event = json.loads(line.removeprefix("data: "))
        if "error" in event:
            out.write("\n")
            error = event["error"]
            raise ClientError(f"vidserve: {error.get('code')}: {error.get('message')}", EXIT_SERVER)
        for choice in event.get("choices", []):
            text = choice.get("delta", {}).get("content")
            if text:
                out.write(text)
                out.flush()
        usage = event.get("usage") or usage
    out.write("\n")
    if usage:
        prompt, answer = usage.get("prompt_tokens"), usage.get("completion_tokens")
        err.write(f"[{prompt} prompt + {answer} answer tokens]\n")
