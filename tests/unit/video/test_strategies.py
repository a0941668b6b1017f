"""Sampling strategies, the read plan and hard sources, on videos made here with known content:
the frame number is drawn into each frame and read back from the pixels, so every index and
timestamp is checked exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from deploy.config.settings import ExtractionSettings
from deploy.core.errors import UnprocessableInput
from deploy.core.messages import SamplingOptions, Strategy
from deploy.video import capture, extract, frame_reader, use_cpus
from deploy.video.probe import probe
from deploy.video.read_plan import (
    OPENCV_READER,
    PYAV_READER,
    ReadCosts,
    plan_reads,
    read_costs,
    split,
)
from deploy.video.sampling import scene_indices
from deploy.video.threads import THREADS
from tests.support.videos import (
    decode_index,
    encode_index,
    with_display_rotation,
    write_frames,
    write_h264,
)

# Exact places (uniform_slack_s 0): these tests check that each frame is the one asked for.
SETTINGS = ExtractionSettings(uniform_slack_s=0)
pytestmark = pytest.mark.usefixtures("reader")  # every test with each frame reader


def _indices(batch_frames: np.ndarray) -> list[int]:
    return [decode_index(frame) for frame in batch_frames]


def test_keyframes_only(tmp_path: Path) -> None:
    data = write_h264(tmp_path / "k.mp4", 60, 30.0, (160, 120), gop=10).read_bytes()
    batch = extract(data, SamplingOptions(strategy=Strategy.KEYFRAMES), SETTINGS)
    assert batch.meta.indices == [0, 10, 20, 30, 40, 50]
    assert _indices(batch.frames) == batch.meta.indices
    thinned = extract(data, SamplingOptions(strategy=Strategy.KEYFRAMES, num_frames=3), SETTINGS)
    assert thinned.meta.indices == [0, 20, 50]
    window = SamplingOptions(strategy=Strategy.KEYFRAMES, start_s=0.5, end_s=1.5)
    assert extract(data, window, SETTINGS).meta.indices == [20, 30, 40]


def test_sparse_frames_are_reached_by_seeking_and_are_exact(tmp_path: Path) -> None:
    path = write_h264(tmp_path / "long.mp4", 900, 30.0, (160, 120), gop=30)
    index = probe(str(path))
    assert index is not None
    assert index.frame_count == 900
    assert index.keyframes == list(range(0, 900, 30))
    wanted = [0, 300, 599, 899]
    plan = plan_reads(wanted, index.keyframes)
    assert plan.seeks == 3
    assert plan.decodes < plan.sequential_decodes / 5
    batch = extract(path.read_bytes(), SamplingOptions(num_frames=4), SETTINGS)
    assert batch.meta.indices == wanted
    assert _indices(batch.frames) == wanted
    assert batch.meta.timestamps_s == pytest.approx([i / 30.0 for i in wanted], abs=1e-6)


def test_dense_frames_are_one_sequential_pass() -> None:
    plan = plan_reads(list(range(0, 300, 5)), list(range(0, 300, 30)))
    assert plan.seeks == 0
    assert plan.decodes == plan.sequential_decodes == 296


def test_a_plan_splits_into_parts_of_equal_work_that_start_with_a_seek() -> None:
    keyframes = list(range(0, 900, 30))
    plan = plan_reads(list(range(0, 900, 7)), keyframes)
    parts = split(plan, 3)
    assert len(parts) == 3
    # Every target once, in order, and each part after the first starts with a seek.
    assert [step.target for part in parts for step in part.steps] == list(range(0, 900, 7))
    assert [part.steps[0].seek for part in parts] == [False, True, True]
    work = [part.decodes for part in parts]
    assert max(work) - min(work) <= 2 * 30  # equal up to a GOP each
    assert split(plan, 1) == [plan]
    assert split(plan_reads([10, 500], None), 4) == [plan_reads([10, 500], None)]


def test_parts_are_cut_by_cost_not_by_frame_count() -> None:
    """Frames of the second half cost three times those of the first (a busier scene): the cut
    moves towards the end, and the costlier part costs less than with an even count."""
    keyframes = list(range(0, 900, 30))
    plan = plan_reads(list(range(0, 900, 7)), keyframes)
    costs = ReadCosts([1.0] * 450 + [3.0] * 450, convert=1.0)
    even, weighed = split(plan, 2), split(plan, 2, costs)
    assert [step.target for part in weighed for step in part.steps] == list(range(0, 900, 7))
    assert weighed[1].steps[0].target > even[1].steps[0].target + 100  # 469 -> 616

    def cost(part_targets: list[int]) -> float:
        first = plan_reads(part_targets, keyframes).steps[0]
        landing = first.target - first.decodes + 1
        frames = sum(costs.frames[landing : part_targets[-1] + 1])
        return frames + costs.convert * len(part_targets) + (costs.seek if first.seek else 0)

    def slowest(parts: list) -> float:
        return max(cost([step.target for step in part.steps]) for part in parts)

    assert slowest(weighed) < 0.8 * slowest(even)


def test_read_costs_follow_packet_sizes() -> None:
    costs = read_costs([40_000, 4_000, 4_000, 4_000], pixels=100_000)  # fixed part: 2,000 B
    assert sum(costs.frames) / 4 == pytest.approx(1.0)
    assert costs.frames[0] / costs.frames[1] == pytest.approx(42_000 / 6_000)
    assert costs.convert > 0


def test_probe_reads_packet_sizes_in_presentation_order(tmp_path: Path) -> None:
    path = write_h264(tmp_path / "s.mp4", 90, 30.0, (320, 240), gop=30, textured=True)
    index = probe(str(path))
    assert index is not None
    assert index.pixels == 320 * 240
    assert len(index.packet_sizes) == index.frame_count == 90
    # A keyframe carries the whole picture: far bigger than the frames that predict from it.
    key_sizes = [index.packet_sizes[i] for i in index.keyframes]
    others = [size for i, size in enumerate(index.packet_sizes) if i not in index.keyframes]
    assert min(key_sizes) > 3 * max(others)


def test_use_cpus_sets_the_decoder_threads(tmp_path: Path) -> None:
    path = write_h264(tmp_path / "t.mp4", 10, 30.0, (160, 120))
    before = THREADS.cpus
    try:
        for cpus in (1, 3):
            use_cpus(cpus)
            with capture.open_capture(str(path)) as opened:
                assert opened.get(cv2.CAP_PROP_N_THREADS) == cpus
            assert cv2.getNumThreads() == cpus
    finally:
        use_cpus(before)


def test_parts_convert_on_their_own_threads_and_the_pool_comes_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While parts decode side by side OpenCV's pool is at one thread (a pool worker would
    compete with the other decoders); a single decoder keeps the replica's CPUs in the pool."""
    data = write_h264(tmp_path / "q.mp4", 600, 30.0, (160, 120), gop=30).read_bytes()
    seen: list[int] = []
    for name in ("read_part", "read_part_av"):  # OpenCV's reader and PyAV's
        read_part = getattr(frame_reader, name)

        def recording(*args: object, _read: Any = read_part, **kwargs: object) -> object:
            seen.append(cv2.getNumThreads())
            return _read(*args, **kwargs)

        monkeypatch.setattr(frame_reader, name, recording)
    before = THREADS.cpus
    use_cpus(3)
    try:
        extract(data, SamplingOptions(num_frames=50), SETTINGS)  # dense: three parts
        parts, seen[:] = list(seen), []
        assert cv2.getNumThreads() == 3
        extract(data, SamplingOptions(num_frames=2), SETTINGS)  # two seeks: one decoder
    finally:
        use_cpus(before)
    assert parts == [1, 1, 1]
    assert seen == [3]


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_parallel_parts_read_exactly_the_frames_a_single_decoder_reads(
    tmp_path: Path, threads: int
) -> None:
    data = write_h264(tmp_path / "p.mp4", 600, 30.0, (160, 120), gop=30).read_bytes()
    before = THREADS.cpus
    use_cpus(threads)  # one part per CPU
    try:
        dense = extract(data, SamplingOptions(num_frames=50), SETTINGS)
        sparse = extract(data, SamplingOptions(strategy=Strategy.KEYFRAMES), SETTINGS)
    finally:
        use_cpus(before)
    assert _indices(dense.frames) == dense.meta.indices == [round(i * 599 / 49) for i in range(50)]
    assert dense.meta.timestamps_s == pytest.approx(
        [i / 30.0 for i in dense.meta.indices], abs=1e-6
    )
    assert _indices(sparse.frames) == sparse.meta.indices == list(range(0, 600, 30))


def test_pyav_plans_land_on_the_targets_own_keyframe() -> None:
    keyframes = list(range(0, 300, 30))
    # OpenCV aims 16 frames early: frame 35 lands on keyframe 0, so it grabs forward instead.
    assert plan_reads([35], keyframes).steps[0].seek is False
    exact = plan_reads([35], keyframes, PYAV_READER)
    assert (exact.steps[0].seek, exact.decodes) == (True, 6)  # keyframe 30, then 31..35
    # The later part of a split starts with a seek: OpenCV's lands up to 16 frames + a GOP
    # early, PyAV's on the first target's own keyframe.
    targets = list(range(1, 300, 6))
    for reader, backoff in ((OPENCV_READER, 16), (PYAV_READER, 0)):
        later = split(plan_reads(targets, keyframes, reader), 2)[1]
        first = later.steps[0]
        assert later.reader is reader
        assert first.seek
        assert first.decodes == first.target - (first.target - backoff) // 30 * 30 + 1


def test_without_keyframe_index_the_plan_is_sequential() -> None:
    plan = plan_reads([10, 500], None)
    assert (plan.seeks, plan.decodes) == (0, 501)


def test_variable_frame_rate_gets_true_timestamps(tmp_path: Path) -> None:
    # Frames 0-29 last 0.1 s each, then 30-89 last 1/30 s: 3.0 s + 2.0 s.
    retime = "setpts='if(lt(N,30),N/10,3+(N-30)/30)/TB'"
    images = (encode_index(i, 160, 120) for i in range(90))
    path = write_frames(
        tmp_path / "vfr.mp4", images, 30.0, (160, 120), ["-vf", retime, "-fps_mode", "vfr"]
    )
    batch = extract(path.read_bytes(), SamplingOptions(fps=2.0), SETTINGS)
    expected = [0, 5, 10, 15, 20, 25, 30, 45, 60, 75]
    assert batch.meta.indices == expected
    assert _indices(batch.frames) == expected
    assert batch.meta.timestamps_s == pytest.approx(
        [0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5], abs=1e-3
    )
    uniform = extract(path.read_bytes(), SamplingOptions(num_frames=3), SETTINGS)
    assert _indices(uniform.frames) == uniform.meta.indices == [0, 44, 89]
    assert uniform.meta.timestamps_s == pytest.approx([0.0, 3.0 + 14 / 30, 3.0 + 59 / 30], abs=1e-3)


def test_rotated_video_comes_out_upright(tmp_path: Path) -> None:
    images = (encode_index(i, 160, 96) for i in range(20))
    plain = write_frames(tmp_path / "plain.mp4", images, 10.0, (160, 96))
    path = with_display_rotation(plain, tmp_path / "rot.mp4", 90)
    batch = extract(path.read_bytes(), SamplingOptions(num_frames=3), SETTINGS)
    frame = batch.frames[0]
    assert frame.shape[0] > frame.shape[1]  # portrait: the display matrix was applied
    # Displayed rotated by 90 degrees counter-clockwise: undo it to read the number.
    assert (
        [decode_index(np.rot90(f, k=-1)) for f in batch.frames] == batch.meta.indices == [0, 10, 19]
    )


@pytest.mark.parametrize(
    ("pix_fmt", "size"),
    [("yuv420p10le", (160, 120)), ("gray", (160, 120)), ("yuv444p", (161, 121))],
    ids=["10-bit", "grayscale", "odd-size"],
)
def test_hard_sources_decode_exactly(tmp_path: Path, pix_fmt: str, size: tuple[int, int]) -> None:
    images = (encode_index(i, *size) for i in range(30))
    path = write_frames(tmp_path / "v.mp4", images, 10.0, size, pix_fmt=pix_fmt)
    batch = extract(path.read_bytes(), SamplingOptions(num_frames=4), SETTINGS)
    assert batch.meta.indices == [0, 10, 19, 29]
    assert _indices(batch.frames) == batch.meta.indices
    assert batch.frames.dtype == np.uint8
    assert batch.frames.shape[-1] == 3
    assert (batch.meta.source_width, batch.meta.source_height) == size


CUTS = [0, 23, 51, 80]
LEVELS = [20, 200, 60, 180]


def _scene_frame(index: int) -> np.ndarray:
    scene = max(i for i, start in enumerate(CUTS) if start <= index)
    frame = np.full((120, 160, 3), LEVELS[scene], np.uint8)
    x = (index * 3) % 140
    frame[50:70, x : x + 20] = 255 - LEVELS[scene]  # motion inside a scene
    return frame


@pytest.fixture
def scenes(tmp_path: Path) -> bytes:
    images = (_scene_frame(i) for i in range(100))
    return write_frames(tmp_path / "scenes.mp4", images, 10.0, (160, 120)).read_bytes()


def test_scene_sampling_finds_the_cuts(scenes: bytes) -> None:
    settings = ExtractionSettings(scene_analysis_fps=10.0, uniform_slack_s=0)
    batch = extract(scenes, SamplingOptions(strategy=Strategy.SCENE, num_frames=4), settings)
    assert batch.meta.indices == CUTS
    levels = [int(np.median(frame)) for frame in batch.frames]
    assert levels == pytest.approx(LEVELS, abs=4)


def test_scene_sampling_tops_up_uniformly_and_keeps_the_gap(scenes: bytes) -> None:
    settings = ExtractionSettings(scene_analysis_fps=10.0, uniform_slack_s=0)
    options = SamplingOptions(strategy=Strategy.SCENE, num_frames=6, min_gap_s=1.0)
    # Uniform candidates 0, 20, 40, 59, 79, 99: 20, 59 and 79 are within 1 s of a cut.
    assert extract(scenes, options, settings).meta.indices == [0, 23, 40, 51, 80, 99]


def test_scene_selection_prefers_the_strongest_cuts() -> None:
    candidates = list(range(0, 100, 10))
    distances = [0, 0.1, 0.9, 0.35, 0.1, 0.5, 0.1, 0.95, 0.1, 0.1]
    chosen = scene_indices(candidates, distances, threshold=0.3, min_gap=15, count=3)
    # Cuts at 20 (0.9), 30 (0.35), 50 (0.5), 70 (0.95): 70 and 20 are strongest.
    assert chosen == [0, 20, 70]


def test_fps_strategy_needs_fps(tmp_path: Path) -> None:
    data = write_h264(tmp_path / "v.mp4", 10, 10.0, (64, 48)).read_bytes()
    with pytest.raises(UnprocessableInput, match="needs fps"):
        extract(data, SamplingOptions(strategy=Strategy.FPS), SETTINGS)


def test_uniform_frames_move_to_cheaper_ones_within_the_slack(tmp_path: Path) -> None:
    """The default uniform sampling (extraction.uniform_slack_s 0.5): each frame within 0.5 s
    of its exact place, moved to the one nearest after a keyframe, decoding fewer frames; the
    frames delivered are those the metadata names, at their true times."""
    path = write_h264(tmp_path / "gop2s.mp4", 600, 30.0, (160, 120), gop=60)
    data = path.read_bytes()
    exact = extract(data, SamplingOptions(num_frames=16), SETTINGS)
    cheap = extract(data, SamplingOptions(num_frames=16), ExtractionSettings())
    assert ExtractionSettings().uniform_slack_s == 0.5
    assert len(cheap.meta.indices) == 16
    assert cheap.meta.indices == sorted(set(cheap.meta.indices))
    for moved, place in zip(cheap.meta.indices, exact.meta.indices, strict=True):
        assert abs(moved - place) <= 15  # 0.5 s at 30 fps
    assert _indices(cheap.frames) == cheap.meta.indices
    assert cheap.meta.timestamps_s == [pytest.approx(i / 30.0) for i in cheap.meta.indices]
    keyframes = list(range(0, 600, 60))
    decodes = [plan_reads(b.meta.indices, keyframes, PYAV_READER).decodes for b in (exact, cheap)]
    assert decodes[1] < 0.6 * decodes[0], decodes
