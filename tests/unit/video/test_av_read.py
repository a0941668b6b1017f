"""Which reader reads what, and that PyAV's reader (av_read) gives OpenCV's frames: same
indices and timestamps exactly, same colours to within resampling, and a fall back to OpenCV
whenever its frames do not match the index."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from deploy.config.settings import ExtractionSettings
from deploy.core.messages import FrameBatch, SamplingOptions
from deploy.video import av_read, decode, extract, frame_reader, use_cpus
from deploy.video.probe import probe
from deploy.video.read_plan import PYAV_READER, plan_reads
from deploy.video.threads import THREADS
from tests.support.videos import (
    decode_index,
    encode_index,
    ffmpeg_exe,
    textured_backgrounds,
    with_display_rotation,
    write_frames,
    write_h264,
)

# Exact places (uniform_slack_s 0): these tests check that each frame is the one asked for.
SETTINGS = ExtractionSettings(uniform_slack_s=0)


def _indices(batch: FrameBatch) -> list[int]:
    return [decode_index(frame) for frame in batch.frames]


@pytest.fixture
def readers(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Frames kept by each reader, counted as they return."""
    kept = {"pyav": 0, "opencv": 0}
    for name, reader in (("read_part_av", "pyav"), ("read_part", "opencv")):
        read_part = getattr(frame_reader, name)

        def counting(*args: Any, _read: Any = read_part, _as: str = reader, **kwargs: Any) -> Any:
            part = _read(*args, **kwargs)
            kept[_as] += len(part.kept)
            return part

        monkeypatch.setattr(frame_reader, name, counting)
    return kept


@pytest.fixture
def seeks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The keyframes PyAV's reader seeks to, in order."""
    landed: list[int] = []
    seek = av_read.Frames.seek

    def counting(self: Any, keyframe: int) -> None:
        landed.append(keyframe)
        seek(self, keyframe)

    monkeypatch.setattr(av_read.Frames, "seek", counting)
    return landed


def _make(kind: str, tmp_path: Path) -> Path:
    images = [encode_index(i, 160, 120) for i in range(30)]
    if kind == "rotated":
        plain = write_frames(tmp_path / "plain.mp4", images, 10.0, (160, 120))
        return with_display_rotation(plain, tmp_path / "v.mp4", 90)
    return write_frames(tmp_path / "v.mp4", images, 10.0, (160, 120), pix_fmt=kind)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("yuv420p", "pyav"),
        ("yuvj420p", "opencv"),  # full range
        ("yuv420p10le", "opencv"),
        ("yuv444p", "opencv"),
        ("gray", "opencv"),
        ("rotated", "opencv"),  # a display matrix: OpenCV turns it upright
    ],
)
def test_pyav_reads_plain_4_2_0_and_opencv_the_rest(
    tmp_path: Path, readers: dict[str, int], kind: str, expected: str
) -> None:
    batch = extract(_make(kind, tmp_path).read_bytes(), SamplingOptions(num_frames=4), SETTINGS)
    assert batch.meta.indices == [0, 10, 19, 29]
    frames = [np.rot90(f, k=-1) for f in batch.frames] if kind == "rotated" else batch.frames
    assert [decode_index(f) for f in frames] == batch.meta.indices
    assert readers[expected] == 4
    assert readers["opencv" if expected == "pyav" else "pyav"] == 0
    assert batch.meta.reader == expected  # and the extractor's log line says so


def test_both_readers_give_the_same_colours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = (640, 360)
    backgrounds = textured_backgrounds(*size)
    images = [encode_index(i, *size, next(backgrounds)) for i in range(40)]
    data = write_frames(tmp_path / "c.mp4", images, 10.0, size).read_bytes()
    options = SamplingOptions(num_frames=5)
    pyav = extract(data, options, SETTINGS)
    monkeypatch.setattr(av_read, "av", None)
    opencv = extract(data, options, SETTINGS)
    assert pyav.meta.indices == opencv.meta.indices
    assert pyav.meta.timestamps_s == opencv.meta.timestamps_s
    assert pyav.frames.shape == opencv.frames.shape
    difference = np.abs(pyav.frames.astype(int) - opencv.frames.astype(int))
    # Both convert with BT.601; they differ only in where chroma is resampled.
    assert difference.mean() < 3
    assert np.percentile(difference, 99) < 25
    # Not grey by accident: the video is colourful and both kept its colours.
    assert np.abs(opencv.frames[..., 0].astype(int) - opencv.frames[..., 2]).mean() > 5


def test_b_frames_are_numbered_by_presentation_time(
    tmp_path: Path, readers: dict[str, int]
) -> None:
    """libx264's default preset reorders frames (B-frames): decode order is not presentation
    order, and seeks, parts and numbering must still give exact frames."""
    images = (encode_index(i, 160, 120) for i in range(600))
    path = write_frames(
        tmp_path / "b.mp4", images, 30.0, (160, 120), ["-preset", "medium", "-g", "30", "-bf", "3"]
    )
    data = path.read_bytes()
    before = THREADS.cpus
    use_cpus(2)
    try:
        sparse = extract(data, SamplingOptions(num_frames=6), SETTINGS)  # seeks
        dense = extract(data, SamplingOptions(num_frames=150), SETTINGS)  # two parts
    finally:
        use_cpus(before)
    assert _indices(sparse) == sparse.meta.indices == [0, 120, 240, 359, 479, 599]
    assert _indices(dense) == dense.meta.indices
    assert dense.meta.timestamps_s == pytest.approx([i / 30 for i in dense.meta.indices], abs=1e-6)
    assert readers == {"pyav": 156, "opencv": 0}


def test_a_seek_that_lands_elsewhere_falls_back_to_opencv(
    tmp_path: Path,
    readers: dict[str, int],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = write_h264(tmp_path / "s.mp4", 300, 30.0, (160, 120), gop=30).read_bytes()
    # A seek that lands one keyframe past the planned one, as a container with wrong
    # timestamps would make it: the first frame decoded is already past the target.
    monkeypatch.setattr(av_read, "landing", lambda target, keyframes, reader: target + 30)
    with caplog.at_level(logging.WARNING, logger="ray.serve.vidserve.extract"):
        batch = extract(data, SamplingOptions(num_frames=3), SETTINGS)
    assert _indices(batch) == batch.meta.indices == [0, 150, 299]
    assert batch.meta.reader == "opencv"
    assert "PyAV's frames do not match the index" in caplog.text
    assert readers["opencv"] == 3


def test_odd_frame_sides_are_converted_whole(tmp_path: Path, readers: dict[str, int]) -> None:
    """I420 needs even sides: with a patch factor that makes them odd, FFmpeg scales."""
    data = write_h264(tmp_path / "o.mp4", 20, 10.0, (160, 120)).read_bytes()
    batch = extract(
        data,
        SamplingOptions(num_frames=3),
        ExtractionSettings(patch_factor=7, min_pixels=49, uniform_slack_s=0),
    )
    assert batch.frames.shape[1:3] == (119, 161)
    assert readers["pyav"] == 3
    assert _indices(batch) == batch.meta.indices == [0, 10, 19]


def test_the_probe_reports_the_decoder_pixel_format(tmp_path: Path) -> None:
    plain = probe(str(_make("yuv420p", tmp_path)))
    assert plain is not None
    assert plain.pixel_format == "I420"
    assert av_read.can_read(plain)
    ten_bit = probe(str(_make("yuv420p10le", tmp_path)))
    assert ten_bit is not None
    assert ten_bit.pixel_format not in ("I420", "")
    assert not av_read.can_read(ten_bit)


def test_both_readers_read_the_same_stream_of_several(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file with two video streams: both readers take the first, as OpenCV does (FFmpeg's
    "best" stream, which PyAV offers, would be the larger second one here)."""
    small = write_frames(
        tmp_path / "a.mp4", (encode_index(i + 50, 96, 64) for i in range(30)), 10.0, (96, 64)
    )
    backgrounds = textured_backgrounds(320, 240)
    large = write_frames(
        tmp_path / "b.mp4",
        (encode_index(i, 320, 240, next(backgrounds)) for i in range(30)),
        10.0,
        (320, 240),
    )
    both = tmp_path / "two.mp4"
    command = [
        ffmpeg_exe(), "-loglevel", "error", "-y", "-i", str(small), "-i", str(large),
        "-map", "0:v", "-map", "1:v", "-c", "copy", str(both),
    ]  # fmt: skip
    subprocess.run(command, check=True)
    data = both.read_bytes()
    pyav = extract(data, SamplingOptions(num_frames=3), SETTINGS)
    monkeypatch.setattr(av_read, "av", None)
    opencv = extract(data, SamplingOptions(num_frames=3), SETTINGS)
    assert (opencv.meta.source_width, opencv.meta.source_height) == (96, 64)
    assert opencv.meta.indices == pyav.meta.indices == [0, 14, 29]
    assert _indices(opencv) == _indices(pyav) == [50, 64, 79]
    assert pyav.frames.shape == opencv.frames.shape


def test_pyav_seeks_on_variable_frame_rate_video(
    tmp_path: Path, readers: dict[str, int], seeks: list[int]
) -> None:
    """OpenCV reads variable-frame-rate video in order (its seeks go by frame number derived
    from time); PyAV's seek by presentation time, so sparse frames are still reached by seeking."""
    # Frames 0-149 last 0.1 s each, then 150-299 last 1/30 s: 15 s + 5 s; a keyframe every 30.
    retime = "setpts='if(lt(N,150),N/10,15+(N-150)/30)/TB'"
    images = (encode_index(i, 160, 120) for i in range(300))
    extra = ["-vf", retime, "-fps_mode", "vfr", "-g", "30", "-keyint_min", "30"]
    path = write_frames(tmp_path / "vfr.mp4", images, 30.0, (160, 120), extra)
    batch = extract(path.read_bytes(), SamplingOptions(num_frames=4), SETTINGS)
    assert _indices(batch) == batch.meta.indices == [0, 100, 199, 299]
    assert batch.meta.timestamps_s == pytest.approx([0, 10, 16.6333, 19.9667], abs=1e-3)
    assert seeks == [90, 180, 270]
    assert readers == {"pyav": 4, "opencv": 0}


def test_dense_pyav_reads_seek_over_the_frames_before_each_keyframe(
    tmp_path: Path, readers: dict[str, int], seeks: list[int]
) -> None:
    """A seek costs about two frame decodes beyond its own (plan.SEEK_COST_FRAMES, measured by
    bench/extract.py --seeks): where the next target lies past a keyframe and more than that
    many frames separate the last target from it, PyAV skips them by seeking; the frames stay
    exact."""
    path = write_h264(tmp_path / "gop30.mp4", 150, 30.0, (160, 120), gop=30)
    wanted = list(range(0, 150, 7))
    index = probe(str(path))
    assert index is not None
    plan = plan_reads(wanted, index.keyframes, PYAV_READER)
    # 35: from 29, grabbing decodes 7, a seek to keyframe 30 costs 2 + 6 = 8: grab. 63: from
    # 57, a seek to 60 costs 2 + 4 < 7: seek (57-59 skipped); 91: 2 + 2 (85-89 skipped);
    # 119 and 126: keyframes 90 and 120 are too far back or too close.
    assert [step.target for step in plan.steps if step.seek] == [63, 91]
    assert plan.decodes == plan.sequential_decodes - 3 - 5 == 140
    # OpenCV's seeks land a GOP earlier (it backs off 16 frames): no seek pays.
    assert plan_reads(wanted, index.keyframes).seeks == 0
    before = THREADS.cpus
    use_cpus(1)  # one decoder follows the whole plan (not split into parts)
    try:
        batch = decode.read_frames(str(path), wanted, index, 30.0, SETTINGS)
    finally:
        use_cpus(before)
    assert _indices(batch) == batch.meta.indices == wanted
    assert seeks == [60, 90]
    assert readers == {"pyav": len(wanted), "opencv": 0}


@pytest.mark.parametrize("threads", [1, 2])
def test_frames_no_other_refers_to_are_not_decoded_unless_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threads: int
) -> None:
    """On libx264's default preset (B-frames, most of them referred to by no other frame), a
    plan's non-target frames that nothing refers to are discarded before decoding; the frames
    kept are bit for bit those of a decoder that decodes everything, on one decoder thread and
    on frame threads (which take the setting with each packet)."""
    size = (320, 240)
    backgrounds = textured_backgrounds(*size)
    images = (encode_index(i, *size, next(backgrounds)) for i in range(300))
    path = write_frames(
        tmp_path / "b.mp4", images, 30.0, size, ["-preset", "medium", "-g", "60", "-bf", "3"]
    )
    index = probe(str(path))
    assert index is not None
    wanted = [1, 2, 35, 97, 150, 151, 233, 298]  # B-frames among them (1, 2: right after a key)
    plan = plan_reads(wanted, index.keyframes, PYAV_READER)

    def read(decoded: list[int]) -> np.ndarray:
        """The plan's frames; how many frames the decoder gave, appended to `decoded`."""
        opened: list[av_read.Frames] = []

        class Counted(av_read.Frames):
            def __init__(self, *args: Any) -> None:
                super().__init__(*args)
                opened.append(self)

        output = frame_reader.Output(len(wanted), len(wanted), SETTINGS)
        with monkeypatch.context() as patch:
            patch.setattr(av_read, "Frames", Counted)
            kept, _, _ = av_read.read_part(str(path), plan, index, output, start=0, threads=threads)
        assert kept == wanted
        assert output.frames is not None
        decoded.append(sum(frames.decoded for frames in opened))
        return output.frames

    skipping: list[int] = []
    frames = read(skipping)
    everything: list[int] = []
    with monkeypatch.context() as patch:
        patch.setattr(av_read.Frames, "_wanted", lambda self, pts: True)
        reference = read(everything)
    assert [decode_index(frame) for frame in frames] == wanted
    assert np.array_equal(frames, reference)
    # About two frames in five of this encoding are referred to by none: far fewer decoded.
    assert skipping[0] < 0.8 * everything[0], (skipping, everything)
    assert everything[0] >= plan.decodes - 2  # (the plan counts from its keyframes)
