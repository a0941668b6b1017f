"""OpenCV's capture of a video: on a file (FFmpeg's backend reads files), bytes put in one."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import cv2

from deploy.core.errors import UnprocessableInput
from deploy.core.messages import MediaKind
from deploy.video.threads import THREADS

SUPPORTED = {
    MediaKind.VIDEO: "an MP4, MOV, MKV, WebM or AVI video",
    MediaKind.IMAGE: "a JPEG, PNG, WebP or BMP image",
}


def fits_in_shm(size: int) -> bool:
    """Docker's default /dev/shm is 64 MB: use it only with room to spare."""
    if not (os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK)):
        return False
    return shutil.disk_usage("/dev/shm").free > 2 * size


@contextmanager
def as_file(data: bytes) -> Iterator[str]:
    """OpenCV's FFmpeg backend reads files: put the bytes in memory-backed tmp when there is one."""
    directory = "/dev/shm" if fits_in_shm(len(data)) else None
    with tempfile.NamedTemporaryFile(dir=directory, prefix="vidserve-", suffix=".video") as handle:
        handle.write(data)
        handle.flush()
        yield handle.name


@contextmanager
def open_capture(path: str, threads: int | None = None) -> Iterator[cv2.VideoCapture]:
    """A capture on `path`; its decoder uses `threads` threads (default: all of use_cpus)."""
    params = [cv2.CAP_PROP_N_THREADS, threads or THREADS.cpus]
    capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG, params)
    try:
        if not capture.isOpened():
            raise UnprocessableInput(
                "the video could not be opened: it is corrupt, truncated or in a format OpenCV "
                f"cannot decode; send {SUPPORTED[MediaKind.VIDEO]}",
                code="corrupt_media",
            )
        yield capture
    finally:
        capture.release()
