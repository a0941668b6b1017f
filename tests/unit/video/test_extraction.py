"""Extraction on videos made in fixtures, read back frame by frame from their pixels."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from deploy.config.settings import ExtractionSettings
from deploy.core.errors import InvalidRequest, UnprocessableInput
from deploy.core.messages import MediaKind, SamplingOptions
from deploy.video import extract
from deploy.video.resize import fit_size, per_frame_max_pixels
from deploy.video.sampling import fps_indices, uniform_indices
from tests.support.videos import decode_index, encode_index, ffmpeg_exe, write_h264, write_opencv

DATA = Path(__file__).resolve().parents[2] / "data"
FRAMES, FPS, SIZE = 60, 30.0, (320, 240)

Maker = Callable[[Path], Path]
MAKERS: dict[str, Maker] = {
    "mp4-mp4v": lambda d: write_opencv(d / "v.mp4", "mp4v", FRAMES, FPS, SIZE),
    "avi-mjpg": lambda d: write_opencv(d / "v.avi", "MJPG", FRAMES, FPS, SIZE),
    "mp4-h264": lambda d: write_h264(d / "v.mp4", FRAMES, FPS, SIZE),
}
# Exact places (uniform_slack_s 0): these tests check that each frame is the one asked for.
SETTINGS = ExtractionSettings(uniform_slack_s=0)
pytestmark = pytest.mark.usefixtures("reader")  # every test with each frame reader


@pytest.fixture(params=sorted(MAKERS))
def video(request: pytest.FixtureRequest, tmp_path: Path) -> bytes:
    return MAKERS[request.param](tmp_path).read_bytes()


def test_uniform_sampling_gives_exact_frames_and_timestamps(video: bytes) -> None:
    batch = extract(video, SamplingOptions(num_frames=7), SETTINGS)
    expected = [0, 10, 20, 30, 39, 49, 59]
    assert batch.meta.indices == expected
    assert [decode_index(frame) for frame in batch.frames] == expected
    assert batch.meta.timestamps_s == pytest.approx([i / FPS for i in expected], abs=1e-3)
    assert batch.meta.total_frames == FRAMES
    assert batch.meta.source_fps == pytest.approx(FPS)
    assert batch.meta.duration_s == pytest.approx(FRAMES / FPS)
    assert (batch.meta.source_width, batch.meta.source_height) == SIZE
    assert batch.meta.kind is MediaKind.VIDEO


def test_fps_sampling_picks_every_nth_frame(video: bytes) -> None:
    batch = extract(video, SamplingOptions(fps=3.0), SETTINGS)
    assert batch.meta.indices == list(range(0, FRAMES, 10))
    assert [decode_index(frame) for frame in batch.frames] == batch.meta.indices
    assert batch.meta.timestamps_s == pytest.approx([i / FPS for i in batch.meta.indices], abs=1e-3)


def test_fps_sampling_is_capped_by_num_frames(video: bytes) -> None:
    batch = extract(video, SamplingOptions(fps=30.0, num_frames=5), SETTINGS)
    assert batch.count == 5
    assert batch.meta.indices == [0, 15, 30, 44, 59]
    assert [decode_index(frame) for frame in batch.frames] == batch.meta.indices


def test_default_frame_count_comes_from_settings(video: bytes) -> None:
    batch = extract(
        video, SamplingOptions(), ExtractionSettings(default_num_frames=4, uniform_slack_s=0)
    )
    assert batch.meta.indices == [0, 20, 39, 59]


def test_frames_fit_the_pixel_budget(video: bytes) -> None:
    settings = ExtractionSettings(
        min_pixels=56 * 56, max_pixels=224 * 224, total_pixels=4 * 50176, uniform_slack_s=0
    )
    batch = extract(video, SamplingOptions(num_frames=8), settings)
    _, height, width, channels = batch.frames.shape
    assert channels == 3
    assert height % 28 == 0
    assert width % 28 == 0
    assert height * width * batch.count / 2 <= settings.total_pixels
    assert batch.frames.dtype == np.uint8


def test_more_frames_than_the_video_has_gives_every_frame(tmp_path: Path) -> None:
    data = write_opencv(tmp_path / "short.avi", "MJPG", 5, 10.0, (64, 48)).read_bytes()
    batch = extract(data, SamplingOptions(num_frames=32), SETTINGS)
    assert batch.meta.indices == [0, 1, 2, 3, 4]


def test_image_is_one_frame(tmp_path: Path) -> None:
    ok, png = cv2.imencode(".png", encode_index(1234, 300, 200))
    assert ok
    batch = extract(png.tobytes(), SamplingOptions(), SETTINGS, MediaKind.IMAGE)
    assert batch.meta.kind is MediaKind.IMAGE
    assert batch.count == 1
    assert decode_index(batch.frames[0]) == 1234


def test_empty_upload_is_a_400() -> None:
    with pytest.raises(InvalidRequest, match="empty"):
        extract(b"", SamplingOptions(), SETTINGS)


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (b"just some text, not a video\n" * 10, "look like text"),
        (bytes(range(256)) * 4, "unknown binary"),
        (
            cv2.imencode(".jpg", np.zeros((32, 32, 3), np.uint8))[1].tobytes(),
            "holds a jpeg image, not a video",
        ),
    ],
)
def test_not_a_video_is_a_422_saying_what_it_is(payload: bytes, words: str) -> None:
    with pytest.raises(UnprocessableInput, match=words) as info:
        extract(payload, SamplingOptions(), SETTINGS)
    assert info.value.status_code == 422


def test_video_sent_as_image_is_refused(tmp_path: Path) -> None:
    data = write_opencv(tmp_path / "v.avi", "MJPG", 3, 10.0, (64, 48)).read_bytes()
    with pytest.raises(UnprocessableInput, match="holds a avi video, not a image") as info:
        extract(data, SamplingOptions(), SETTINGS, MediaKind.IMAGE, "image")
    # What it is, for the API layer to say where to send it (api/upload.py with_field_hint).
    assert info.value.details == {"found": "video"}
    assert info.value.param == "image"


def test_truncated_video_is_a_422(tmp_path: Path) -> None:
    source = write_h264(tmp_path / "src.mp4", 48, 24.0, (160, 120))
    faststart = tmp_path / "fast.mp4"
    subprocess.run(
        [ffmpeg_exe(), "-loglevel", "error", "-y", "-i", str(source), "-c", "copy",
         "-movflags", "+faststart", str(faststart)],
        check=True,
    )  # fmt: skip
    data = faststart.read_bytes()
    with pytest.raises(UnprocessableInput, match="truncated"):
        extract(data[: len(data) // 2], SamplingOptions(num_frames=8), SETTINGS)


def test_video_without_its_index_is_a_422(tmp_path: Path) -> None:
    data = write_opencv(tmp_path / "v.mp4", "mp4v", 30, 10.0, (64, 48)).read_bytes()
    with pytest.raises(UnprocessableInput, match="corrupt"):
        extract(data[: len(data) // 2], SamplingOptions(), SETTINGS)


def test_corrupt_regression_file_is_a_422() -> None:
    data = (DATA / "corrupt_h264.mp4").read_bytes()
    with pytest.raises(UnprocessableInput, match="corrupt"):
        extract(data, SamplingOptions(num_frames=8), SETTINGS)


def test_uniform_indices_cover_both_ends() -> None:
    assert uniform_indices(100, 2) == [0, 99]
    assert uniform_indices(100, 1) == [0]
    assert uniform_indices(3, 10) == [0, 1, 2]


def test_fps_indices_refuse_a_video_without_rate() -> None:
    with pytest.raises(ValueError, match="num_frames"):
        fps_indices(100, 0.0, 1.0, 10)


@pytest.mark.parametrize(
    ("size", "expected"),
    [((240, 320), (252, 308)), ((1080, 1920), (224, 420)), ((20, 20), (56, 56))],
)
def test_fit_size_rounds_to_patches_within_bounds(
    size: tuple[int, int], expected: tuple[int, int]
) -> None:
    height, width = fit_size(*size, factor=28, min_pixels=56 * 56, max_pixels=100_000)
    assert (height, width) == expected
    assert 56 * 56 <= height * width <= 100_000


def test_total_budget_shrinks_each_frame() -> None:
    assert per_frame_max_pixels(2, min_pixels=10, max_pixels=1000, total_pixels=800) == 800
    assert per_frame_max_pixels(16, min_pixels=10, max_pixels=1000, total_pixels=800) == 100
    assert per_frame_max_pixels(1000, min_pixels=10, max_pixels=1000, total_pixels=800) == 10
