"""Decoded-size limits: what a small file may cost to decode.

A 1 MB PNG can declare 20000x20000 pixels (1.2 GB once decoded); a short MP4 can declare an
absurd frame count or duration. Each limit is checked from the header before anything is decoded
(image headers read by Pillow without decoding; video headers and packets by the probe) and
again while decoding (a frame bigger than its header said, a stream longer than declared).
Over a limit: 413 naming the setting, its value and what was found.

OpenCV's and Pillow's own caps are set too (deploy/__init__.py, `apply_library_caps`), as a
second line behind the header check.
"""

from __future__ import annotations

import io
import logging
import os
import re
import warnings

from deploy.config.settings import ExtractionSettings
from deploy.core.errors import PayloadTooLarge

logger = logging.getLogger("ray.serve.vidserve.limits")

# OpenCV reads this once per process, when it is loaded (deploy/__init__.py sets it).
_OPENCV_CAP_VAR = "OPENCV_IO_MAX_IMAGE_PIXELS"


def over_limit(
    setting: str, limit: float, found: float, what: str, fix: str, *, param: str | None = None
) -> PayloadTooLarge:
    """The one 413 of a decoded-size limit: which setting, its value, what was found."""
    return PayloadTooLarge(
        f"{what} is {_number(found)}, over extraction.{setting} ({_number(limit)}); {fix}",
        code=f"{setting}_exceeded",
        param=param,
        details={"limit": f"extraction.{setting}", "max": limit, "found": found},
    )


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def check_pixels(
    width: int, height: int, settings: ExtractionSettings, what: str, param: str | None = None
) -> None:
    pixels = width * height
    if pixels > settings.max_source_pixels:
        raise over_limit(
            "max_source_pixels",
            settings.max_source_pixels,
            pixels,
            f"{what} is {width}x{height}: its pixel count",
            "send a smaller picture or a lower-resolution video",
            param=param,
        )


def check_frames(
    count: int, settings: ExtractionSettings, what: str = "the video", param: str | None = None
) -> None:
    if count > settings.max_source_frames:
        raise over_limit(
            "max_source_frames",
            settings.max_source_frames,
            count,
            f"the number of frames in {what}",
            "send a shorter video, or cut it into parts",
            param=param,
        )


def check_duration(duration_s: float, settings: ExtractionSettings) -> None:
    if duration_s > settings.max_duration_s:
        raise over_limit(
            "max_duration_s",
            settings.max_duration_s,
            round(duration_s, 1),
            "the video's duration in seconds",
            "send a shorter video, or cut it into parts",
        )


def check_decode_work(decodes: int, pixels: int, settings: ExtractionSettings) -> None:
    """Frames a plan decodes x pixels each: the CPU one request may cost."""
    work = decodes * pixels
    if work > settings.max_decode_pixels:
        raise over_limit(
            "max_decode_pixels",
            settings.max_decode_pixels,
            work,
            f"the decode work asked ({decodes} frames x {pixels} pixels)",
            "ask fewer frames, a sparser strategy or a shorter window (start_s/end_s)",
        )


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the image's header, nothing decoded; None when Pillow cannot tell
    (the decoder then reports the file as corrupt). Pillow's own cap (apply_library_caps)
    raises DecompressionBombError past twice it."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
    except (OSError, ValueError, SyntaxError):
        return None
    return int(width), int(height)


def check_image(
    data: bytes, settings: ExtractionSettings, what: str = "the image", param: str | None = None
) -> None:
    """An image's declared size against the pixel limit, before it is decoded."""
    from PIL import Image

    try:
        size = image_size(data)
    except Image.DecompressionBombError as exc:
        # Pillow refused to open it: its message has the pixel count, not the sides.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        raise over_limit(
            "max_source_pixels",
            settings.max_source_pixels,
            int(found.group(1)) if found else settings.max_source_pixels + 1,
            f"the pixel count of {what}",
            "send a smaller picture",
            param=param,
        ) from None
    if size is not None:
        check_pixels(size[0], size[1], settings, what, param)


def apply_library_caps(settings: ExtractionSettings) -> None:
    """Pillow's decoder cap set to max_source_pixels (its default is about 89 M). OpenCV's was
    set when the package was imported (deploy/__init__.py): say so when the setting asks for
    more than it lets through."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = settings.max_source_pixels
    if settings.max_source_pixels > opencv_cap():
        logger.warning(
            "extraction.max_source_pixels (%d) is above OpenCV's cap %s=%d: images between the "
            "two will be refused; set %s in the extractor's environment (runtime_env) to match",
            settings.max_source_pixels,
            _OPENCV_CAP_VAR,
            opencv_cap(),
            _OPENCV_CAP_VAR,
        )


def opencv_cap() -> int:
    """The pixel cap OpenCV's image decoders were loaded with."""
    value = os.environ.get(_OPENCV_CAP_VAR, "")
    return int(value) if value.isdigit() else 1 << 30
