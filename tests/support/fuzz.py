"""Mutations of valid media for the fuzz test (tests/unit/video/test_fuzz.py): each takes the
bytes of a valid file and a seeded `random.Random`, and returns hostile bytes of the kind a
client can send. Deterministic for a given seed."""

from __future__ import annotations

import random
import struct
import subprocess
import zlib
from collections.abc import Callable
from pathlib import Path

from tests.support.videos import ffmpeg_exe

Mutation = Callable[[bytes, random.Random], bytes]


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(1, max(2, len(data)))]


def flip_bytes(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice([1, 4, 32, 256])):
        out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def corrupt_header(data: bytes, rng: random.Random) -> bytes:
    """Random bytes over the first 1-4 KB, where containers keep their headers."""
    out = bytearray(data)
    end = min(len(out), rng.choice([64, 1024, 4096]))
    for position in range(rng.randrange(8, 16), end, rng.randrange(1, 9)):
        out[position] = rng.randrange(256)
    return bytes(out)


def _patch_after(data: bytes, tag: bytes, offset: int, value: bytes) -> bytes:
    """`value` written `offset` bytes after every occurrence of `tag` (a box or chunk name)."""
    out = bytearray(data)
    start = 0
    while (found := out.find(tag, start)) >= 0:
        at = found + len(tag) + offset
        if at + len(value) <= len(out):
            out[at : at + len(value)] = value
        start = found + 1
    return bytes(out)


def zero_dimensions(data: bytes, rng: random.Random) -> bytes:
    """Width/height 0 (or absurd) in an MP4's track header and sample entry, a PNG's IHDR,
    an AVI's main header."""
    side = rng.choice([b"\x00\x00", b"\xff\xff"])
    out = _patch_after(data, b"avc1", 24, side + side)  # sample entry: width, height (16 bit)
    out = _patch_after(out, b"mp4v", 24, side + side)
    out = _patch_after(out, b"tkhd", 76, side * 2 + side * 2)  # 16.16 fixed width, height
    out = _patch_after(out, b"IHDR", 0, side * 2 + side * 2)  # PNG: 32-bit width, height
    return _patch_after(out, b"avih", 36, side * 2 + side * 2)  # AVI: dwWidth, dwHeight


def absurd_frame_rate(data: bytes, rng: random.Random) -> bytes:
    """Timescales and frame durations of 0, 1 or 2^32-1: frame rates of 0, infinite or tiny."""
    value = struct.pack(">I", rng.choice([0, 1, 0xFFFFFFFF]))
    out = _patch_after(data, b"mdhd", 16, value)  # v0: flags(4) created(4) modified(4) scale
    out = _patch_after(out, b"mvhd", 16, value)
    out = _patch_after(out, b"stts", 12, value)  # first entry: count, delta
    little = struct.pack("<I", rng.choice([0, 1, 0xFFFFFFFF]))
    return _patch_after(out, b"avih", 4, little)  # AVI: dwMicroSecPerFrame


def swap_container(data: bytes, rng: random.Random) -> bytes:
    """One format's signature on another's body."""
    heads = [
        b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2",
        b"RIFF\x00\x00\x00\x00AVI LIST",
        b"\x1aE\xdf\xa3",  # Matroska/WebM
        b"\x89PNG\r\n\x1a\n",
        b"\xff\xd8\xff\xe0",  # JPEG
    ]
    head = rng.choice(heads)
    return head + data[rng.randrange(0, min(len(data), 64)) :]


MUTATIONS: dict[str, Mutation] = {
    "truncate": truncate,
    "flip_bytes": flip_bytes,
    "corrupt_header": corrupt_header,
    "zero_dimensions": zero_dimensions,
    "absurd_frame_rate": absurd_frame_rate,
    "swap_container": swap_container,
}


def many_streams(source: Path, path: Path, streams: int) -> Path:
    """`source`'s video stream mapped `streams` times into one Matroska file."""
    maps = [arg for _ in range(streams) for arg in ("-map", "0:v:0")]
    subprocess.run(
        [
            ffmpeg_exe(),
            "-loglevel",
            "error",
            "-y",
            "-i",
            str(source),
            *maps,
            "-c",
            "copy",
            str(path),
        ],
        check=True,
    )
    return path


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height over a token of pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def run_case(data: bytes, kind: str) -> tuple[str, int | None, str]:
    """Extract `data` as the FrameExtractor would (in a worker process, so that a crash of a
    decoder shows as the worker dying): ("ok", None, ""), ("error", status, code) for a typed
    error, or ("unexpected", None, what) for anything else."""
    from deploy.config.settings import ExtractionSettings
    from deploy.core.errors import VidserveError
    from deploy.core.messages import MediaKind, SamplingOptions
    from deploy.video import extract
    from deploy.video.limits import apply_library_caps

    settings = ExtractionSettings(max_pixels=224 * 224, min_pixels=56 * 56)
    apply_library_caps(settings)
    try:
        extract(data, SamplingOptions(num_frames=4), settings, MediaKind(kind))
    except VidserveError as exc:
        return "error", exc.status_code, exc.code
    except Exception as exc:  # noqa: BLE001 - what the fuzz test is looking for
        return "unexpected", None, f"{type(exc).__name__}: {exc}"
    return "ok", None, ""
