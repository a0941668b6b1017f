"""Multipart uploads read as they stream in, refused the moment they pass the size limit, and
hashed as they stream in (the digest is the extractor's cache key: a repeat sends no bytes)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from deploy.api.body import capped_stream, require_content_type
from deploy.core.errors import InvalidRequest, PayloadTooLarge, UnprocessableInput
from deploy.core.messages import MediaKind
from deploy.serving.pipeline import MediaSource

# Room for the multipart boundaries and the small text fields around the file.
_FORM_OVERHEAD_BYTES = 1024 * 1024
_MAX_FIELD_BYTES = 1024 * 1024
# The multipart field that carries each kind of media.
FIELD_FOR = {MediaKind.VIDEO: "file", MediaKind.IMAGE: "image"}


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the upload exceeds the limit of {limit} bytes (extraction.max_upload_bytes); "
        "send a shorter or more compressed video",
        param="file",
    )


class _HashingParser(MultiPartParser):
    """Starlette's parser, updating a SHA-256 (video.cache.digest) per file field with each
    piece of the file as it arrives, so no second pass over the bytes is needed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hashes: dict[str, Any] = {}

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        super().on_part_data(data, start, end)
        part = self._current_part
        if part.file is not None:
            self.hashes.setdefault(part.field_name, hashlib.sha256()).update(data[start:end])


@dataclass(frozen=True)
class Upload:
    form: FormData
    digests: dict[str, str]  # file field -> video.cache.digest of its bytes

    async def close(self) -> None:
        await self.form.close()


async def read_multipart(
    request: Request, max_upload_bytes: int, spool_threshold_bytes: int = 1024 * 1024
) -> Upload:
    """Parse a multipart/form-data body, stopping as soon as it exceeds the limit; a file part
    larger than `spool_threshold_bytes` (http.spool_threshold_bytes) goes to a temporary file
    as it arrives, not to memory."""
    require_content_type(
        request, "multipart/form-data", "a multipart/form-data body with a 'file' field"
    )
    limit = max_upload_bytes + _FORM_OVERHEAD_BYTES
    parser = _HashingParser(
        request.headers,
        capped_stream(request, limit, lambda: _too_large(max_upload_bytes)),
        max_files=1,
        max_fields=32,
        max_part_size=_MAX_FIELD_BYTES,
    )
    parser.spool_max_size = spool_threshold_bytes
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise InvalidRequest(f"malformed multipart body: {exc.message}") from None
    return Upload(form, {name: h.hexdigest() for name, h in parser.hashes.items()})


async def read_source(upload: Upload) -> MediaSource:
    """The one media of an analyze request: a video in 'file', an image in 'image', or a 'url'
    to download (video or image, told by its bytes)."""
    form = upload.form
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
    data = await value.read()
    return MediaSource(param=name, kind=kind, data=data, digest=upload.digests.get(name))


def with_field_hint(error: UnprocessableInput) -> UnprocessableInput:
    """A video sent in the image field (or an image in the file field): say which field takes
    it. The extractor names what it found (`details.found`); the fields are the API's."""
    found = (error.details or {}).get("found")
    field = next((f for kind, f in FIELD_FOR.items() if kind.value == found), None)
    fields = FIELD_FOR.values()
    if (
        error.code == "unsupported_media"
        and field
        and error.param in fields
        and field != error.param
    ):
        error.message += f"; send it as the '{field}' field instead"
    return error
