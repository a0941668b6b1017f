"""Test videos made on the spot, with the frame number drawn into every frame.

Each frame is a grid of 16 cells that spell the frame index in binary (white = 1), robust to
codec loss, so a test reads back exactly which source frame it was given.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np

BITS = 16
GRID = 4  # 4 x 4 cells


def encode_index(index: int, width: int, height: int) -> np.ndarray:
    """A BGR frame whose cells spell `index` in binary."""
    frame = np.zeros((height, width, 3), np.uint8)
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


def write_h264(
    path: Path, frames: int, fps: float, size: tuple[int, int], gop: int | None = None
) -> Path:
    """An H.264 MP4 made by ffmpeg (libx264) from raw frames piped in."""
    width, height = size
    command = [
        ffmpeg_exe(), "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{width}x{height}", "-r", f"{fps}",
        "-i", "-",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
    ]  # fmt: skip
    if gop is not None:
        command += ["-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0"]
    command.append(str(path))
    process = subprocess.Popen(command, stdin=subprocess.PIPE)
    if process.stdin is None:
        raise RuntimeError("ffmpeg has no stdin")
    for index in range(frames):
        process.stdin.write(encode_index(index, width, height).tobytes())
    process.stdin.close()
    if process.wait() != 0:
        raise RuntimeError(f"ffmpeg failed writing {path}")
    return path
