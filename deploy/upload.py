"""Multipart uploads read as they stream in, refused the moment they pass the size limit."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from deploy.errors import InvalidRequest, PayloadTooLarge
from deploy.pipeline import MediaSource
from deploy.video.decode import FIELD_FOR

# Room for the multipart boundaries and the small text fields around the file.
_FORM_OVERHEAD_BYTES = 1024 * 1024
_MAX_FIELD_BYTES = 1024 * 1024


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the upload exceeds the limit of {limit} bytes (extraction.max_upload_bytes); "
        "send a shorter or more compressed video",
        param="file",
    )


async def _capped(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise _too_large(limit - _FORM_OVERHEAD_BYTES)
        yield chunk


async def read_multipart(request: Request, max_upload_bytes: int) -> FormData:
    """Parse a multipart/form-data body, stopping as soon as it exceeds the limit."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise InvalidRequest(
            f"expected a multipart/form-data body with a 'file' field, got "
            f"{content_type or 'no content type'!r}",
            code="unsupported_content_type",
        )
    limit = max_upload_bytes + _FORM_OVERHEAD_BYTES
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(max_upload_bytes)
    parser = MultiPartParser(
        request.headers,
        _capped(request, limit),
        max_files=1,
        max_fields=32,
        max_part_size=_MAX_FIELD_BYTES,
    )
    try:
        return await parser.parse()
    except MultiPartException as exc:
        raise InvalidRequest(f"malformed multipart body: {exc.message}") from None


async def read_source(form: FormData) -> MediaSource:
    """The one media of an analyze request: a video in 'file', an image in 'image', or a 'url'
    to download (video or image, told by its bytes)."""
    present = [name for name in (*FIELD_FOR.values(), "url") if form.get(name) is not None]
    if len(present) != 1:
        problem = "no" if not present else "more than one"
        raise InvalidRequest(
            f"{problem} media field: attach the video as multipart field 'file', an image as "
            "field 'image', or give a 'url' to download it from (exactly one of them)",
            param="file",
            code="missing_file",
        )
    name = present[0]
    value = form.get(name)
    if name == "url":
        if not isinstance(value, str) or not value.strip():
            raise InvalidRequest(
                "'url' must be a text field holding an http(s) URL", param="url", code="invalid_url"
            )
        return MediaSource(param="url", url=value.strip())
    if not isinstance(value, UploadFile):
        raise InvalidRequest(
            f"'{name}' must be a file upload, not a text field", param=name, code="missing_file"
        )
    kind = next(k for k, field in FIELD_FOR.items() if field == name)
    return MediaSource(param=name, kind=kind, data=await value.read())
