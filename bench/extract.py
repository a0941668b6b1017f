"""Frame extraction speed: vidserve's extractor against the usual ways of getting N frames.

    python bench/extract.py [--minutes 10] [--frames 8 32 128] [--repeat 1] [--only 1080p]
    python bench/extract.py --ablation [--repeat 7]
    python bench/extract.py --costs
    python bench/extract.py --seeks [--repeat 3]
    python bench/extract.py --skip [--repeat 5]

Generates (once, cached under $VIDSERVE_CACHE_DIR/bench) H.264 videos with the frame number drawn
into every frame over a panning, lightly noisy texture (flat frames decode unrealistically fast):
a long 720p video with a 2 s keyframe interval, the same with 10 s, and a 30 s 1080p clip;
then for each and each frame count, times in this one run:

    ours      deploy.video.extract (packet index, then grab forward or seek per frame, resize)
    (a) read  OpenCV read() of every frame (decode + convert all)
    (b) vllm  the loader vLLM uses for video_url: grab every frame, retrieve the chosen
    (c) ffmpeg  the ffmpeg command line with a select filter, raw frames to a pipe
    (d) floor decode every frame without conversion (grab() only): the floor of any sequential pass
    (e) floor|| the same split between single-threaded decoders side by side, as ours splits
              long plans (one per CPU): the floor for a reader working that way
    (f) av floor (d) with PyAV, which ours reads plain 4:2:0 streams with (av_read.py): the
              same libavcodec, so (d) and (f) should match

and prints one table with the ratios against (b) and (d). A cell runs every method once per
round, in turn, for --repeat rounds and takes each one's median, so that a slow spell of the
machine weighs on all methods alike ((a) is timed once per video). Every method's frames are
checked to be the asked ones (read back from the pixels), so a fast wrong answer cannot win.
Targets (issue 5): ours >= 3x faster than (b) for 32 frames of the long videos; ours <= 1.2x (d)
everywhere; ours < (d) where the frames are sparse enough for seeking to pay.

--ablation times the densest cell (128 frames of the 1080p clip), wall and CPU seconds (all
threads), with the extractor as built and with one choice undone at a time: its parallel parts
cut at equal frame counts instead of equal estimated cost (plan.read_costs); OpenCV's own thread
pool left on while the parts run (threads.parts_convert_alone); OpenCV reading the video instead
of PyAV (av_read.py); PyAV's plans made with the seek cost plan.py used before --seeks measured
it (7 frame decodes instead of 2).

--skip times the cold request of bench/vs_vllm.py (16 frames of a 20 s 720p clip, the
extractor's default settings, one CPU) on two encodings of the same clip: x264's ultrafast preset
(no B-frames: every frame is referred to) and its default, medium (B-frames, most referred to by
no other frame), with the extractor as built (non-target frames that nothing refers to are
discarded undecoded: av_read.py) and with every frame of the plan decoded: frames decoded, CPU
seconds, and a check that both give the same pixels.

--costs fits the cost model behind that split on each video: one single-threaded decoder's time
per frame against the frame's packet size (decode = fixed + per byte; the fixed part in bytes
per pixel is plan.DECODE_FIXED_BYTES_PER_PIXEL), and the time to retrieve and resize a kept
frame against that fixed part (plan.CONVERT_COST_FIXED), and the same with PyAV's planes
(plan.CONVERT_COST_FIXED_AV).

--seeks measures what one seek costs beyond the frames it decodes (plan.SEEK_COST_FRAMES), for
each reader with one decoder thread and with one per CPU, paired: the same frames timed in a
sequential pass and after a seek to their keyframe.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from unittest import mock

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deploy.config import env  # noqa: E402
from deploy.config.settings import ExtractionSettings  # noqa: E402
from deploy.core.messages import SamplingOptions  # noqa: E402
from deploy.video import (  # noqa: E402
    av_read,
    capture,
    decode,
    extract,
    frame_reader,
    resize,
    use_cpus,
)
from deploy.video.probe import VideoIndex, probe  # noqa: E402
from deploy.video.read_plan import (  # noqa: E402
    OPENCV_READER,
    PYAV_READER,
    Plan,
    plan_reads,
    read_costs,
    split,
)
from deploy.video.sampling import uniform_indices  # noqa: E402
from tests.support.videos import (  # noqa: E402
    decode_index,
    encode_index,
    ffmpeg_exe,
    write_frames,
    write_h264,
)

FPS = 30.0


def _cached_video(file: str, label: str, write: Callable[[Path], Path]) -> Path:
    """The bench's video `file`, under $VIDSERVE_CACHE_DIR/bench; `write(tmp)` makes it the
    first time (`label` says which)."""
    cache = env.cache_dir() / "bench"
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / file
    if not path.exists():
        print(f"generating {label} ...", flush=True)
        write(path.with_suffix(".tmp.mp4")).rename(path)
    return path


def _videos(minutes: float) -> dict[str, Path]:
    long_frames = int(minutes * 60 * FPS)
    specs = {
        f"{minutes:g}min 720p gop 2s": (long_frames, (1280, 720), int(2 * FPS)),
        f"{minutes:g}min 720p gop 10s": (long_frames, (1280, 720), int(10 * FPS)),
        "30s 1080p gop 2s": (int(30 * FPS), (1920, 1080), int(2 * FPS)),
    }
    videos = {}
    for name, (frames, size, gop) in specs.items():
        videos[name] = _cached_video(
            f"{frames}f-{size[0]}x{size[1]}-g{gop}-textured.mp4",
            f"{name} ({frames} frames)",
            functools.partial(_textured, frames=frames, size=size, gop=gop),
        )
    return videos


def _textured(tmp: Path, frames: int, size: tuple[int, int], gop: int) -> Path:
    return write_h264(tmp, frames, FPS, size, gop=gop, textured=True)


def _frame_count(path: Path) -> int:
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    return count


Frames = list[np.ndarray] | np.ndarray | None


def read_all(path: Path, wanted: list[int]) -> Frames:
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    chosen, index, keep = set(wanted), 0, []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if index in chosen:
            keep.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        index += 1
    capture.release()
    return keep


def vllm_loader(path: Path, wanted: list[int]) -> Frames:
    """vLLM's OpenCV video loader: grab() every frame, retrieve() the chosen ones."""
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    chosen, keep = set(wanted), []
    for index in range(_frame_count(path)):
        if not capture.grab():
            break
        if index in chosen:
            ok, frame = capture.retrieve()
            if ok:
                keep.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    return keep


def ffmpeg_select(path: Path, wanted: list[int]) -> Frames:
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    width, height = (
        int(capture.get(p)) for p in (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT)
    )
    capture.release()
    select = _any_of(wanted)
    command = [
        ffmpeg_exe(), "-loglevel", "error", "-threads", "0", "-i", str(path),
        "-vf", f"select='{select}'", "-fps_mode", "passthrough",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-",
    ]  # fmt: skip
    raw = subprocess.run(command, check=True, capture_output=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)


def _any_of(indices: list[int]) -> str:
    """eq(n,i) for each index, summed as a balanced tree: ffmpeg's expression parser refuses a
    flat sum of ~100 terms."""
    if len(indices) == 1:
        return f"eq(n\\,{indices[0]})"
    middle = len(indices) // 2
    return f"({_any_of(indices[:middle])}+{_any_of(indices[middle:])})"


def decode_floor(path: Path, wanted: list[int]) -> Frames:
    """Decode every frame, convert none: what any sequential pass must at least spend."""
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    while capture.grab():
        pass
    capture.release()
    return None  # nothing kept: the floor is a time, not an answer


def decode_floor_parallel(path: Path, wanted: list[int]) -> Frames:
    """(d) on as many single-threaded decoders as OpenCV has threads, each grabbing its share
    of the video from a keyframe: the floor for a reader that splits its work as ours does."""
    index = probe(str(path))
    assert index is not None
    costs = dataclasses.replace(read_costs(index.packet_sizes, index.pixels), convert=0.0)
    every = plan_reads(list(range(index.frame_count)), index.keyframes)
    parts = split(every, cv2.getNumThreads(), costs)

    def grab(part: Plan) -> None:
        capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
        if part.steps[0].seek:
            capture.set(cv2.CAP_PROP_POS_FRAMES, part.steps[0].target)
        for _ in part.steps:
            capture.grab()
        capture.release()

    with ThreadPoolExecutor(len(parts)) as pool:
        list(pool.map(grab, parts))
    return None


def decode_floor_av(path: Path, wanted: list[int]) -> Frames:
    """(d) with PyAV (frame threads, one per CPU): the same libavcodec, the floor for its reader."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = cv2.getNumberOfCPUs()
        for _ in container.decode(stream):
            pass
    return None


def ours(path: Path, wanted: list[int]) -> Frames:
    """From the bytes, as the extractor deployment gets them (includes the temp file), with
    the deployment's threading (use_cpus: here, the machine's CPUs)."""
    use_cpus(cv2.getNumberOfCPUs())
    settings = ExtractionSettings(max_num_frames=len(wanted), default_num_frames=len(wanted))
    return extract(path.read_bytes(), SamplingOptions(num_frames=len(wanted)), settings).frames


Method = Callable[[Path, list[int]], Frames]
METHODS: dict[str, Method] = {
    "ours": ours,
    "(a) read": read_all,
    "(b) vllm": vllm_loader,
    "(c) ffmpeg": ffmpeg_select,
    "(d) floor": decode_floor,
    "(e) floor||": decode_floor_parallel,
    "(f) av floor": decode_floor_av,
}


# What each --ablation variant undoes of the extractor as built.
ABLATIONS: dict[str, Callable[[], contextlib.AbstractContextManager[object]]] = {
    "as built": contextlib.nullcontext,
    "split by frame count": lambda: mock.patch.object(
        frame_reader, "read_costs", return_value=None
    ),
    "OpenCV pool in parts": lambda: mock.patch.object(
        frame_reader, "parts_convert_alone", contextlib.nullcontext
    ),
    "OpenCV reads it": lambda: mock.patch.object(av_read, "av", None),
    "seek cost 7 (before)": lambda: mock.patch.object(
        decode, "PYAV_READER", dataclasses.replace(PYAV_READER, cost=7.0)
    ),
}


def ablation(path: Path, count: int, repeat: int) -> None:
    """The extractor as built against the same with one of its choices undone."""
    wanted = uniform_indices(_frame_count(path), count)
    variants = list(ABLATIONS)
    wall: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(repeat):
        # In turn, as in the main table, each round starting with the next variant.
        shift = round_ % len(variants)
        for name in variants[shift:] + variants[:shift]:
            with ABLATIONS[name]():
                spent = _measured(ours, path, wanted)
            wall[name].append(spent[0])
            cpu[name].append(spent[1])
    base_wall, base_cpu = statistics.median(wall[variants[0]]), statistics.median(cpu[variants[0]])
    print(f"\n{count} frames of {path.name}, medians of {repeat} rounds\n")
    print(f"{'variant':<22} {'wall s':>8} {'vs built':>8} {'CPU s':>8} {'vs built':>8}")
    for name in variants:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        print(f"{name:<22} {w:>8.3f} {w / base_wall:>7.2f}x {c:>8.3f} {c / base_cpu:>7.2f}x")


@contextlib.contextmanager
def counting_frames() -> Iterator[list[av_read.Frames]]:
    """The PyAV decoders opened meanwhile; each counts the frames it gave (`decoded`)."""
    opened: list[av_read.Frames] = []

    class Counted(av_read.Frames):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            opened.append(self)

    with mock.patch.object(av_read, "Frames", Counted):
        yield opened


def skip_table(repeat: int) -> None:
    """Frames decoded and CPU seconds with and without discarding unreferenced frames."""
    use_cpus(1)
    settings = ExtractionSettings()
    options = SamplingOptions(num_frames=16)
    print(f"\n16 frames of a 20 s 720p30 clip, gop 2 s, one CPU; medians of {repeat} rounds\n")
    header = f"{'encoding':<14} {'variant':<18} {'decoded':>8} {'CPU s':>7} {'vs all':>7}"
    print(header)
    print("-" * len(header))
    for preset in ("ultrafast", "medium"):
        path = _cached_video(
            f"600f-1280x720-g60-{preset}.mp4",
            f"20 s 720p, x264 {preset}",
            functools.partial(_numbered, preset=preset),
        )
        data = path.read_bytes()
        variants = {
            "as built": contextlib.nullcontext,
            "decode all": lambda: mock.patch.object(av_read.Frames, "_wanted", return_value=True),
        }
        cpu: dict[str, list[float]] = {name: [] for name in variants}
        decoded: dict[str, int] = {}
        pixels: dict[str, np.ndarray] = {}
        for _ in range(repeat):
            for name, undo in variants.items():
                with undo(), counting_frames() as counted:
                    used = resource.getrusage(resource.RUSAGE_SELF)
                    batch = extract(data, options, settings)
                    after = resource.getrusage(resource.RUSAGE_SELF)
                cpu[name].append(after.ru_utime + after.ru_stime - used.ru_utime - used.ru_stime)
                decoded[name] = sum(frames.decoded for frames in counted)
                pixels[name] = batch.frames
        if not np.array_equal(pixels["as built"], pixels["decode all"]):
            raise AssertionError(f"{preset}: discarding changed the frames kept")
        base = statistics.median(cpu["decode all"])
        for name in variants:
            spent = statistics.median(cpu[name])
            print(f"{preset:<14} {name:<18} {decoded[name]:>8} {spent:>7.3f} {spent / base:>6.2f}x")


def _numbered(tmp: Path, preset: str) -> Path:
    """600 frames of 720p with their numbers drawn, 2 Mbit/s, gop 2 s, by x264's `preset`."""
    images = (encode_index(i, 1280, 720) for i in range(600))
    extra = ["-preset", preset, "-b:v", "2M", "-g", "60"]
    return write_frames(tmp, images, FPS, (1280, 720), extra)


def _timed(method: Method, path: Path, wanted: list[int]) -> float:
    return _measured(method, path, wanted)[0]


def _measured(method: Method, path: Path, wanted: list[int]) -> tuple[float, float]:
    """Wall and CPU seconds (all threads of this process) of one call."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    frames = method(path, wanted)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - used.ru_utime - used.ru_stime
    # Checked outside the timing: each frame read back from its pixels.
    if frames is not None and [decode_index(f) for f in frames] != wanted:
        raise AssertionError(f"{method.__name__} returned other frames than asked")
    return elapsed, cpu


def _row(path: Path, wanted: list[int], repeat: int, skip: dict[str, float]) -> dict[str, float]:
    """Each method's median time over `repeat` rounds; a round runs every method once, in turn,
    so that a slow spell of the machine falls on all of them and not on one method's runs
    (the ratios are what the targets are about). Methods in `skip` are already timed."""
    runs: dict[str, list[float]] = {name: [] for name in METHODS if name not in skip}
    for _ in range(repeat):
        for name, times in runs.items():
            times.append(_timed(METHODS[name], path, wanted))
    return {**skip, **{name: statistics.median(times) for name, times in runs.items()}}


def cost_fit(path: Path, frames: int = 1800, kept: int = 128) -> tuple[float, float, float, float]:
    """(fixed part of a decode in bytes per pixel, correlation of the fit, converting a kept
    frame with OpenCV (retrieve, resize) and with PyAV (planes shrunk, then converted), both in
    units of that fixed part), from the first `frames` frames."""
    index = probe(str(path))
    assert index is not None
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
    decode_s: list[float] = []
    convert_s: list[float] = []
    every = max(1, min(frames, index.frame_count) // kept)
    size = None
    for i in range(min(frames, index.frame_count)):
        started = time.perf_counter()
        if not capture.grab():
            break
        decode_s.append(time.perf_counter() - started)
        if i % every == 0:
            started = time.perf_counter()
            _, bgr = capture.retrieve()
            size = size or resize.frame_size(bgr.shape[:2], kept, ExtractionSettings())
            resize.to_rgb(bgr, size)
            convert_s.append(time.perf_counter() - started)
    capture.release()
    assert size is not None
    convert_av_s: list[float] = []
    out = np.empty((*size, 3), np.uint8)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        for i, frame in enumerate(container.decode(stream)):
            if i >= len(decode_s):
                break
            if i % every == 0:
                started = time.perf_counter()
                av_read._convert(frame, out)
                convert_av_s.append(time.perf_counter() - started)
    # Sizes are in presentation order, decoding in decode order: equal without B-frames (these).
    sizes = np.asarray(index.packet_sizes[1 : len(decode_s)], float)  # frame 0: opening costs
    seconds = np.asarray(decode_s[1:])
    per_byte, fixed = np.polyfit(sizes, seconds, 1)
    correlation = float(np.corrcoef(fixed + per_byte * sizes, seconds)[0, 1])
    return (
        fixed / per_byte / index.pixels,
        correlation,
        statistics.median(convert_s) / fixed,
        statistics.median(convert_av_s) / fixed,
    )


SEEK_SPAN = 16  # frames decoded after each seek's keyframe (OpenCV's back-off)
SEEK_PASS_FRAMES = 3600  # the sequential pass --seeks pairs its seeks with


class _OpenCVDecoder:
    """The extractor's capture (capture.open_capture); a seek to k + 16 lands on keyframe k."""

    def __init__(self, capture: cv2.VideoCapture) -> None:
        self._capture = capture

    def next(self) -> None:
        self._capture.grab()

    def seek_through(self, key: int) -> None:
        """Seek and decode frames key..key+16."""
        self._capture.set(cv2.CAP_PROP_POS_FRAMES, key + SEEK_SPAN)
        self._capture.grab()

    def frame(self) -> np.ndarray:
        """The last frame decoded, RGB."""
        ok, frame = self._capture.retrieve()
        assert ok
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


class _AVDecoder:
    """The extractor's PyAV frames (av_read.Frames); a seek to keyframe k lands on k."""

    def __init__(self, frames: av_read.Frames) -> None:
        self._frames = frames
        self._last: Any = None
        self._position = -1

    def next(self) -> None:
        self._to(self._position + 1)

    def seek_through(self, key: int) -> None:
        """Seek and decode frames key..key+16."""
        self._frames.seek(key)
        self._position = key - 1
        self._to(key + SEEK_SPAN)

    def _to(self, target: int) -> None:
        self._last, self._position = self._frames.advance_to(target, self._position)

    def frame(self) -> np.ndarray:
        """The last frame decoded, RGB."""
        return np.asarray(self._last.to_ndarray(format="rgb24"))


@contextlib.contextmanager
def open_decoder(
    path: Path, index: VideoIndex, reader: str, threads: int
) -> Iterator[_OpenCVDecoder | _AVDecoder]:
    """A decoder on `path` opened as the extractor opens it for `reader` (opencv, pyav)."""
    if reader == "opencv":
        with capture.open_capture(str(path), threads) as opened:
            yield _OpenCVDecoder(opened)
    else:
        with av_read.open_frames(str(path), index, threads) as frames:
            yield _AVDecoder(frames)


READERS = ("opencv", "pyav")


def seek_overhead(
    path: Path, index: VideoIndex, reader: str, threads: int, limit: int = SEEK_PASS_FRAMES
) -> float:
    """What one seek costs beyond the frames it decodes, in average frame decodes, paired:
    one sequential pass over the first `limit` frames records when each frame came out; then
    the decoder seeks to each keyframe k in that range and decodes k..k+16 (OpenCV seeks to
    k + 16 and lands on k; PyAV seeks to k). A seek's overhead is its time less what the same
    17 frames took in the sequential pass; the median, over the pass's mean time per frame."""
    limit = min(limit, index.frame_count)
    keyframes = [k for k in index.keyframes if k > 0 and k + SEEK_SPAN < limit]
    with open_decoder(path, index, reader, threads) as decoder:
        started = time.perf_counter()
        done = []
        for _ in range(limit):
            decoder.next()
            done.append(time.perf_counter() - started)
        per_frame = (done[-1] - done[0]) / (limit - 1)
        excess = []
        for key in keyframes:
            started = time.perf_counter()
            decoder.seek_through(key)
            sequential = done[key + SEEK_SPAN] - done[key - 1]
            excess.append(time.perf_counter() - started - sequential)
    return statistics.median(excess) / per_frame


def seek_table(videos: dict[str, Path], repeat: int) -> None:
    """--seeks: each reader's seek overhead on each video, with one thread (a part of a split
    plan) and with one per CPU (a plan read whole), median of `repeat` runs."""
    cpus = cv2.getNumberOfCPUs()
    configs = [(reader, threads) for reader in READERS for threads in sorted({1, cpus})]
    print("\none seek's cost beyond the frames it decodes, in average frame decodes")
    print(
        f"(median over the keyframes in each video's first {SEEK_PASS_FRAMES} frames, "
        f"of {repeat} runs)\n"
    )
    header = f"{'video':<22} " + " ".join(f"{f'{r} {t}t':>10}" for r, t in configs)
    print(header)
    print("-" * len(header))
    for name, path in videos.items():
        index = probe(str(path))
        assert index is not None
        cells = []
        for reader, threads in configs:
            runs = [seek_overhead(path, index, reader, threads) for _ in range(repeat)]
            cells.append(f"{statistics.median(runs):>10.1f}")
        print(f"{name:<22} " + " ".join(cells), flush=True)
    print(
        f"\nplan.py: OpenCV {OPENCV_READER.cost:g}, PyAV {PYAV_READER.cost:g} (SEEK_COST_FRAMES*)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the long videos")
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--repeat", type=int, default=1, help="runs per cell (median)")
    parser.add_argument("--only", default="", help="only the videos whose name contains this")
    parser.add_argument("--ablation", action="store_true", help="undo its choices one at a time")
    parser.add_argument("--costs", action="store_true", help="fit the split's cost model")
    parser.add_argument("--seeks", action="store_true", help="each reader's seek overhead")
    parser.add_argument("--skip", action="store_true", help="unreferenced frames discarded")
    args = parser.parse_args()
    if args.skip:
        skip_table(args.repeat if args.repeat > 1 else 5)
        return 0
    videos = _videos(args.minutes)
    if args.ablation:
        ablation(videos["30s 1080p gop 2s"], 128, args.repeat)
        return 0
    if args.seeks:
        seek_table({n: p for n, p in videos.items() if args.only in n}, args.repeat)
        return 0
    if args.costs:
        print(f"\n{'video':<22} {'fixed B/px':>10} {'corr':>6} {'convert/fixed':>13} {'av':>6}")
        for name, path in videos.items():
            fixed, correlation, convert, convert_av = cost_fit(path)
            print(
                f"{name:<22} {fixed:>10.4f} {correlation:>6.3f} {convert:>13.2f} {convert_av:>6.2f}"
            )
        return 0
    ours(videos[next(iter(videos))], [0, 1])  # warm-up: first-call imports and allocations
    print(f"\nOpenCV {cv2.__version__}, {cv2.getNumberOfCPUs()} CPUs; seconds per extraction\n")
    header = f"{'video':<22} {'frames':>6} " + " ".join(f"{m:>10}" for m in METHODS)
    header += f" {'b/ours':>7} {'ours/d':>7} {'ours/e':>7} {'ours/f':>7}"
    print(header)
    print("-" * len(header))
    for name, path in videos.items():
        if args.only not in name:
            continue
        total = _frame_count(path)
        read_all_s: dict[str, float] = {}  # (a) does the same work whatever is asked: once
        for count in args.frames:
            wanted = uniform_indices(total, count)
            row = _row(path, wanted, args.repeat, read_all_s)
            read_all_s = {"(a) read": row["(a) read"]}
            cells = " ".join(f"{row[m]:>10.3f}" for m in METHODS)
            ratio_b = row["(b) vllm"] / row["ours"]
            ratio_d = row["ours"] / row["(d) floor"]
            ratio_e = row["ours"] / row["(e) floor||"]
            ratio_f = row["ours"] / row["(f) av floor"]
            print(
                f"{name:<22} {count:>6} {cells} {ratio_b:>6.1f}x {ratio_d:>6.2f}x {ratio_e:>6.2f}x"
                f" {ratio_f:>6.2f}x",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
