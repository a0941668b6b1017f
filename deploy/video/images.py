"""Images: one uploaded image, or a video sent as a list of frame images, decoded and resized
like the frames of a video."""

from __future__ import annotations

import time

import cv2
import numpy as np

from deploy.config.settings import ExtractionSettings
from deploy.core.errors import InvalidRequest, UnprocessableInput
from deploy.core.messages import FrameBatch, MediaKind, SamplingOptions
from deploy.video import limits
from deploy.video.resize import fit_size, frame_size, to_rgb
from deploy.video.sampling import uniform_indices


def frames_from_images(
    images: list[bytes], options: SamplingOptions, settings: ExtractionSettings, param: str
) -> FrameBatch:
    """A video sent as its frames (JPEG or PNG images), taken as 1 s apart as vLLM does; thinned
    uniformly to `num_frames` (or `max_num_frames`) and resized like decoded frames."""
    started = time.perf_counter()
    if not images:
        raise InvalidRequest("the list of frames is empty", param=param, code="empty_file")
    limits.check_frames(len(images), settings, "the list of frames", param)
    count = options.num_frames or min(len(images), settings.max_num_frames)
    indices = uniform_indices(len(images), count)
    frames: list[np.ndarray] = []
    size: tuple[int, int] | None = None
    source = (0, 0)
    for index in indices:
        limits.check_image(images[index], settings, f"frame {index} of the list", param)
        bgr = imdecode(images[index], settings)
        if bgr is None:
            raise UnprocessableInput(
                f"frame {index} of the list is not a decodable JPEG or PNG image",
                param=param,
                code="corrupt_media",
            )
        if size is None:
            source = (bgr.shape[0], bgr.shape[1])
            size = frame_size(source, len(indices), settings)
        frames.append(to_rgb(bgr, size))
    return FrameBatch.of(
        kind=MediaKind.VIDEO,
        frames=np.stack(frames),
        indices=indices,
        timestamps_s=[float(i) for i in indices],
        source_fps=1.0,
        duration_s=float(len(images)),
        source_width=source[1],
        source_height=source[0],
        total_frames=len(images),
        extract_s=time.perf_counter() - started,
    )


def imdecode(data: bytes, settings: ExtractionSettings) -> np.ndarray | None:
    """OpenCV's decode (BGR), None when the bytes are not an image it reads; past OpenCV's own
    pixel cap (deploy/__init__.py) a 413, as the header check would have said."""
    try:
        bgr: np.ndarray | None = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:
        if "CV_IO_MAX_IMAGE_PIXELS" not in str(exc):
            return None
        raise limits.over_limit(
            "max_source_pixels",
            min(settings.max_source_pixels, limits.opencv_cap()),
            limits.opencv_cap() + 1,
            "the image's pixel count, by OpenCV's cap (OPENCV_IO_MAX_IMAGE_PIXELS),",
            "send a smaller picture",
        ) from None
    return bgr


def decode_image(data: bytes, fmt: str, settings: ExtractionSettings) -> FrameBatch:
    limits.check_image(data, settings)  # from the header: nothing decoded yet
    bgr = imdecode(data, settings)
    if bgr is None:
        raise UnprocessableInput(
            f"the {fmt} image could not be decoded: it is corrupt or truncated",
            code="corrupt_media",
        )
    height, width = bgr.shape[:2]
    size = fit_size(
        height,
        width,
        factor=settings.patch_factor,
        min_pixels=settings.min_pixels,
        max_pixels=settings.max_pixels,
    )
    frame = to_rgb(bgr, size)
    return FrameBatch.of(
        kind=MediaKind.IMAGE,
        frames=frame[np.newaxis],
        indices=[0],
        timestamps_s=[0.0],
        source_fps=0.0,
        duration_s=0.0,
        source_width=width,
        source_height=height,
        total_frames=1,
    )
