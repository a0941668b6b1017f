"""Uploads past http.spool_threshold_bytes go to a temporary file as they arrive, not memory;
and the digest of the bytes is the same either way."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import httpx
import pytest
from starlette.datastructures import UploadFile
from starlette.requests import Request

from deploy.api.upload import read_multipart

PAYLOAD = bytes(range(256)) * 8192  # 2 MiB


def _request(chunk: int = 64 * 1024) -> Request:
    built = httpx.Request("POST", "http://x/", files={"file": ("v.mp4", PAYLOAD, "video/mp4")})
    body = built.read()
    pieces = [body[i : i + chunk] for i in range(0, len(body), chunk)]
    headers = [(k.lower().encode(), v.encode()) for k, v in built.headers.items()]

    async def receive() -> dict[str, Any]:
        piece = pieces.pop(0)
        return {"type": "http.request", "body": piece, "more_body": bool(pieces)}

    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
    return Request(scope, receive)


@pytest.mark.parametrize(("threshold", "on_disk"), [(1024 * 1024, True), (4 * 1024 * 1024, False)])
def test_an_upload_past_the_threshold_is_spooled_to_disk(threshold: int, on_disk: bool) -> None:
    async def parse() -> tuple[bool, str, bytes]:
        upload = await read_multipart(_request(), 8 * 1024 * 1024, threshold)
        file = upload.form["file"]
        assert isinstance(file, UploadFile)
        rolled = bool(file.file._rolled)  # type: ignore[attr-defined]
        data = await file.read()
        await upload.close()
        return rolled, upload.digests["file"], data

    rolled, digest, data = asyncio.run(parse())
    assert rolled is on_disk
    assert data == PAYLOAD
    assert digest == hashlib.sha256(PAYLOAD).hexdigest()
