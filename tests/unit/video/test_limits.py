"""Decoded-size limits (video/limits.py): each limit refuses with a 413 naming the setting, its
value and what was found, before the expensive part runs."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from deploy.config.settings import AppArgs, ExtractionSettings
from deploy.core.errors import InvalidRequest, PayloadTooLarge
from deploy.core.messages import MediaKind, SamplingOptions
from deploy.video import extract, frame_reader, frames_from_images, limits
from deploy.video.probe import probe
from tests.support.videos import write_h264


def _png(width: int, height: int) -> bytes:
    ok, data = cv2.imencode(".png", np.zeros((height, width, 3), np.uint8))
    assert ok
    return data.tobytes()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height, with a token of compressed data: what an
    attacker sends (a real 20000x20000 PNG of one colour is about 1 MB)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _refused(error: PayloadTooLarge, setting: str) -> None:
    assert error.status_code == 413
    assert error.code == f"{setting}_exceeded"
    assert error.details is not None
    assert error.details["limit"] == f"extraction.{setting}"
    assert f"extraction.{setting}" in error.message


def test_a_20000_pixel_square_png_is_refused_from_its_header(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decoded: list[int] = []
    real = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda *a: decoded.append(1) or real(*a))
    with pytest.raises(PayloadTooLarge) as raised:
        extract(
            _png_header_only(20000, 20000), SamplingOptions(), ExtractionSettings(), MediaKind.IMAGE
        )
    _refused(raised.value, "max_source_pixels")
    assert raised.value.details is not None
    assert raised.value.details["found"] == 400_000_000
    assert "400,000,000" in raised.value.message
    assert raised.value.param == "image"
    assert decoded == []  # refused before OpenCV decoded anything


def test_an_image_at_the_limit_passes_and_one_pixel_row_more_does_not() -> None:
    settings = ExtractionSettings(max_source_pixels=200 * 100)
    batch = extract(_png(200, 100), SamplingOptions(), settings, MediaKind.IMAGE)
    assert batch.meta.source_width == 200
    with pytest.raises(PayloadTooLarge) as raised:
        extract(_png(200, 101), SamplingOptions(), settings, MediaKind.IMAGE)
    _refused(raised.value, "max_source_pixels")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """60 frames at 30 fps, 160x120."""
    path = write_h264(tmp_path_factory.mktemp("limits") / "v.mp4", 60, 30.0, (160, 120))
    return path.read_bytes()


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("max_source_pixels", 160 * 120 - 1),
        ("max_source_frames", 59),
        ("max_duration_s", 1.5),
        ("max_decode_pixels", 8 * 160 * 120 - 1),
    ],
)
def test_each_video_limit_refuses_just_past_it(clip: bytes, setting: str, value: float) -> None:
    settings = ExtractionSettings(**{setting: value})
    with pytest.raises(PayloadTooLarge) as raised:
        extract(clip, SamplingOptions(num_frames=8), settings)
    _refused(raised.value, setting)
    assert raised.value.param == "video"


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("max_source_pixels", 160 * 120),
        ("max_source_frames", 60),
        ("max_duration_s", 2.1),
        ("max_decode_pixels", 60 * 160 * 120),  # 8 frames' plan decodes at most all 60
    ],
)
def test_each_video_limit_lets_the_video_through_at_it(
    clip: bytes, setting: str, value: float
) -> None:
    batch = extract(clip, SamplingOptions(num_frames=8), ExtractionSettings(**{setting: value}))
    assert batch.count == 8


def test_the_probe_stops_reading_packets_at_the_frame_limit(
    clip: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream longer than its header says is not read to its end: the limit is checked as
    packets are read (every _CHECK_EVERY), not only against the header."""
    path = tmp_path / "v.mp4"
    path.write_bytes(clip)
    monkeypatch.setattr("deploy.video.probe._CHECK_EVERY", 8)
    grabs = 0
    real = cv2.VideoCapture

    class Counting:
        def __init__(self, *args: object) -> None:
            self._capture = real(*args)

        def grab(self) -> bool:
            nonlocal grabs
            grabs += 1
            return bool(self._capture.grab())

        def get(self, prop: int) -> float:
            value = float(self._capture.get(prop))
            return 0.0 if prop == cv2.CAP_PROP_FRAME_COUNT else value  # a header with no count

        def __getattr__(self, name: str) -> object:
            return getattr(self._capture, name)

    monkeypatch.setattr(cv2, "VideoCapture", Counting)
    with pytest.raises(PayloadTooLarge) as raised:
        probe(str(path), ExtractionSettings(max_source_frames=20))
    _refused(raised.value, "max_source_frames")
    assert grabs <= 20 + 8 + 1


def test_a_frame_bigger_than_its_header_is_refused_when_decoded() -> None:
    """The header check is not the only one: the decoder's own frame size is checked too."""
    output = frame_reader.Output(1, 1, ExtractionSettings(max_source_pixels=100 * 100))
    with pytest.raises(PayloadTooLarge) as raised:
        output.slot(0, (101, 100))
    _refused(raised.value, "max_source_pixels")


def test_a_frame_list_is_counted_before_any_frame_is_decoded() -> None:
    from deploy.api.openai_protocol import media_source

    args = AppArgs.model_validate({"extraction": {"max_source_frames": 5}})
    # Not base64 at all: were any frame decoded first, this would be a base64 error.
    url = "data:video/jpeg;base64," + ",".join(["!!!"] * 6)
    with pytest.raises(InvalidRequest) as raised:
        media_source(url, MediaKind.VIDEO, "messages[0].content[0].video_url", args)
    assert raised.value.code == "too_many_frames"
    assert "at most 5" in raised.value.message


def test_each_listed_frame_is_checked_from_its_header() -> None:
    settings = ExtractionSettings(max_source_pixels=64 * 64)
    with pytest.raises(PayloadTooLarge) as raised:
        frames_from_images([_png(64, 64), _png(65, 64)], SamplingOptions(), settings, "frames")
    _refused(raised.value, "max_source_pixels")
    assert raised.value.param == "frames"
    assert "frame 1 of the list" in raised.value.message


def _run(script: str, **env: str) -> str:
    import os

    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    ).stdout.strip()


def test_opencv_is_loaded_with_a_pixel_cap_and_past_it_answers_413() -> None:
    """OpenCV reads its cap when it loads: the package sets it before any cv2 import (8K, the
    setting's default), and an image past it is a 413, not a 500 (here the cap is lowered in
    the environment, as an operator would)."""
    base = "import os, deploy, cv2\nprint(os.environ['OPENCV_IO_MAX_IMAGE_PIXELS'])\n"
    default = str(ExtractionSettings().max_source_pixels)
    assert _run(base, OPENCV_IO_MAX_IMAGE_PIXELS="") == default  # empty: OpenCV would abort
    assert _run(base, OPENCV_IO_MAX_IMAGE_PIXELS="123456") == "123456"  # the operator's
    script = (
        "import cv2, numpy as np\n"
        "from deploy.config.settings import ExtractionSettings\n"
        "from deploy.core.errors import PayloadTooLarge\n"
        "from deploy.video.images import imdecode\n"
        "ok, png = cv2.imencode('.png', np.zeros((120, 120, 3), np.uint8))\n"
        "try:\n"
        "    imdecode(png.tobytes(), ExtractionSettings())\n"
        "except PayloadTooLarge as exc:\n"
        "    print(exc.status_code, exc.code)\n"
    )
    assert _run(script, OPENCV_IO_MAX_IMAGE_PIXELS="10000") == "413 max_source_pixels_exceeded"


def test_pillows_cap_follows_the_setting() -> None:
    script = (
        "from PIL import Image\n"
        "from deploy.config.settings import ExtractionSettings\n"
        "from deploy.video.limits import apply_library_caps\n"
        "apply_library_caps(ExtractionSettings(max_source_pixels=100 * 100))\n"
        "print(Image.MAX_IMAGE_PIXELS)\n"
    )
    assert _run(script) == "10000"
    assert limits.image_size(_png(120, 120)) == (120, 120)
