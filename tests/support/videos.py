"""Test videos made on the spot, with the frame number drawn into every frame.

Each frame is a grid of 16 cells that spell the frame index in binary (white = 1), robust to
codec loss, so a test reads back exactly which source frame it was given.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np

BITS = 16
GRID = 4  # 4 x 4 cells


def encode_index(
    index: int, width: int, height: int, background: np.ndarray | None = None
) -> np.ndarray:
    """A BGR frame whose cells spell `index` in binary (over `background`, kept below 128)."""
    frame = np.zeros((height, width, 3), np.uint8) if background is None else background.copy()
    cell_h, cell_w = height // GRID, width // GRID
    for bit in range(BITS):
        if index >> bit & 1:
            row, col = divmod(bit, GRID)
            frame[row * cell_h : (row + 1) * cell_h, col * cell_w : (col + 1) * cell_w] = 255
    return frame


def decode_index(frame: np.ndarray) -> int:
    """Read back the index from a frame (any size, RGB or BGR)."""
    gray = frame.mean(axis=2) if frame.ndim == 3 else frame
    height, width = gray.shape
    cell_h, cell_w = height / GRID, width / GRID
    value = 0
    for bit in range(BITS):
        row, col = divmod(bit, GRID)
        y0, y1 = int((row + 0.25) * cell_h), int((row + 0.75) * cell_h)
        x0, x1 = int((col + 0.25) * cell_w), int((col + 0.75) * cell_w)
        if gray[y0:y1, x0:x1].mean() > 127:
            value |= 1 << bit
    return value


def write_opencv(path: Path, fourcc: str, frames: int, fps: float, size: tuple[int, int]) -> Path:
    """A video written by OpenCV (`mp4v` into .mp4, `MJPG` into .avi)."""
    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {fourcc} to {path}")
    for index in range(frames):
        writer.write(encode_index(index, width, height))
    writer.release()
    return path


def ffmpeg_exe() -> str:
    return str(imageio_ffmpeg.get_ffmpeg_exe())


def textured_backgrounds(width: int, height: int, seed: int = 0) -> Iterator[np.ndarray]:
    """Panning smooth texture with light noise, dark enough to keep the cells readable: decodes
    at the cost of real footage, unlike flat frames (for benchmarks)."""
    rng = np.random.default_rng(seed)
    base = cv2.resize(
        rng.integers(0, 100, (height // 40 + 1, 2 * width // 40 + 1, 3), dtype=np.uint8),
        (2 * width, height),
        interpolation=cv2.INTER_CUBIC,
    )
    noise = rng.integers(0, 16, (8, height, width, 3), dtype=np.uint8)
    index = 0
    while True:
        shift = (index * 3) % width
        yield cv2.add(base[:, shift : shift + width], noise[index % 8])
        index += 1


def write_h264(
    path: Path,
    frames: int,
    fps: float,
    size: tuple[int, int],
    gop: int | None = None,
    textured: bool = False,
) -> Path:
    """An H.264 MP4 made by ffmpeg (libx264) from raw frames piped in."""
    width, height = size
    backgrounds = textured_backgrounds(width, height) if textured else None
    images = (
        encode_index(i, width, height, next(backgrounds) if backgrounds else None)
        for i in range(frames)
    )
    extra = ["-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0"] if gop else []
    return write_frames(path, images, fps, size, extra)


def write_frames(
    path: Path,
    images: Iterable[np.ndarray],
    fps: float,
    size: tuple[int, int],
    extra: list[str] | None = None,
    pix_fmt: str = "yuv420p",
    input_args: list[str] | None = None,
) -> Path:
    """BGR frames piped into ffmpeg's libx264; `extra` goes before the output (filters, GOP),
    `input_args` before the input (e.g. -display_rotation)."""
    width, height = size
    command = [
        ffmpeg_exe(), "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{width}x{height}", "-r", f"{fps}",
        *(input_args or []), "-i", "-",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", pix_fmt, *(extra or []),
        str(path),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdin=subprocess.PIPE)
    if process.stdin is None:
        raise RuntimeError("ffmpeg has no stdin")
    for image in images:
        process.stdin.write(np.ascontiguousarray(image).tobytes())
    process.stdin.close()
    if process.wait() != 0:
        raise RuntimeError(f"ffmpeg failed writing {path}")
    return path


def with_display_rotation(source: Path, path: Path, degrees: int) -> Path:
    """`source` remuxed (stream copy, pixels untouched) with a display matrix rotating it by
    `degrees` counter-clockwise: what phones write. (Given to an encoding ffmpeg, the option
    rotates the pixels themselves instead.)"""
    command = [
        ffmpeg_exe(), "-loglevel", "error", "-y", "-display_rotation", str(degrees),
        "-i", str(source), "-c", "copy", str(path),
    ]  # fmt: skip
    subprocess.run(command, check=True)
    return path
