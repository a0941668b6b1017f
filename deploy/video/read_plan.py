"""How to reach the chosen frames with the least decoding: grab forward, or seek.

A decoder can only start at a keyframe. To reach frame `t` from the next frame to decode `p`:

    grab forward:  t - p + 1 decodes                         (only when t >= p)
    seek:          SEEK_COST + t - key(t - BACKOFF) + 1      (key(i): last keyframe at or before i)

How a seek lands depends on the reader (`Reader`): OpenCV's FFmpeg backend seeks to BACKOFF
(16) frames before the target, lands on the keyframe before that, and decodes forward to the
target (measured in bench/extract.py: a seek to a keyframe costs a whole previous GOP, one 30
frames into it 30), and decodes frame 0 before its first seek; PyAV (av_read.py) seeks to the
target's own keyframe.
For each chosen frame, in order, the plan takes the cheaper of the two, so dense choices become
one sequential pass and sparse ones a seek per frame (or per group of frames in one GOP). The
seek overhead, in frame decodes, is measured by `bench/extract.py --seeks`.

A long plan can be `split` into parts that run on separate decoders at once. Frames do not cost
the same to decode (a keyframe about four times a P-frame; busy scenes more than still ones), and
a part that finishes late leaves a core idle: parts are cut to equal *estimated cost*
(`ReadCosts`), from each frame's packet size, which the probe reads for free.
"""

from __future__ import annotations

import bisect
import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

# Beyond the frames it decodes, a seek costs about this many frame decodes: a decoder with one
# thread per CPU refills its pipeline after the flush; a single-threaded one (a part of a split
# plan) pays almost nothing. `python bench/extract.py --seeks` measures it per reader, paired
# against the same frames decoded in a sequential pass: about 1-2 with two threads (noisy: two
# runs gave OpenCV -0.4-4.1, PyAV 0.0-2.1), about 0 with one, on the development machine.
# (An earlier unpaired measurement gave 4-8: it counted the keyframe's decode, about four
# P-frames, and the opening as overhead.)
SEEK_COST_FRAMES = 2.0
# OpenCV (cap_ffmpeg_impl.hpp) seeks to this many frames before the target, then decodes forward.
SEEK_BACKOFF_FRAMES = 16
# Decoding a frame costs about a fixed part per pixel plus a part per byte of its packet; the
# fixed part equals about this many bytes per pixel, and retrieving (yuv -> BGR at full size, in
# OpenCV), resizing and converting one kept frame about CONVERT_COST_FIXED times that fixed part;
# shrinking the YUV planes and converting at the small size (PyAV) about CONVERT_COST_FIXED_AV
# (fits on the bench's H.264 videos: `python bench/extract.py --costs`).
DECODE_FIXED_BYTES_PER_PIXEL = 0.02
CONVERT_COST_FIXED = 2.3
CONVERT_COST_FIXED_AV = 0.8


@dataclass(frozen=True)
class Reader:
    """How a reader seeks (where it lands, what it costs beyond the frames it decodes) and what
    converting a kept frame costs it."""

    backoff: int = SEEK_BACKOFF_FRAMES  # its seek aims this many frames before the target
    first_frame: bool = True  # a fresh decoder decodes frame 0 before its first seek
    cost: float = SEEK_COST_FRAMES
    convert: float = CONVERT_COST_FIXED  # in fixed parts of a decode (read_costs)


OPENCV_READER = Reader()
# PyAV (av_read.py): lands on the target's own keyframe, converts after shrinking.
PYAV_READER = Reader(backoff=0, first_frame=False, convert=CONVERT_COST_FIXED_AV)


@dataclass(frozen=True)
class Step:
    """Reach `target`: seek to it first when `seek`, else grab forward to it."""

    target: int
    seek: bool
    decodes: int = 0  # frames decoded to reach it (the step's cost)


@dataclass(frozen=True)
class Plan:
    steps: list[Step]
    decodes: int  # frames the plan decodes (grabs), the measure of its cost
    sequential_decodes: int  # what one sequential pass would decode
    keyframes: list[int] | None = None  # the index it was planned with (None: in order only)
    reader: Reader = OPENCV_READER  # the reader it was planned for

    @property
    def seeks(self) -> int:
        return sum(step.seek for step in self.steps)


def plan_reads(
    targets: list[int], keyframes: list[int] | None, reader: Reader = OPENCV_READER
) -> Plan:
    """The cheapest way to decode `targets` (sorted, distinct frame indices) with a reader that
    seeks as `reader` says. Without a keyframe index (`None`: unknown) the plan is one
    sequential pass."""
    sequential = targets[-1] + 1 if targets else 0
    if not keyframes:
        in_order = [Step(t, False, t - p) for t, p in zip(targets, [-1, *targets], strict=False)]
        return Plan(in_order, sequential, sequential, reader=reader)
    steps: list[Step] = []
    position = 0  # the next frame a grab would decode
    decodes = 0
    for target in targets:
        key = landing(target, keyframes, reader)
        forward = target - position + 1 if target >= position else None
        seek = reader.cost + target - key + 1
        if forward is not None and forward <= seek:
            steps.append(Step(target, False, forward))
            decodes += forward
        else:
            steps.append(Step(target, True, target - key + 1))
            decodes += target - key + 1
        position = target + 1
    return Plan(steps, decodes, sequential, keyframes, reader)


@dataclass(frozen=True)
class ReadCosts:
    """What reading costs, in units of one average frame decode of the video."""

    frames: Sequence[float]  # decoding each frame, in presentation order
    convert: float = 0.0  # retrieving, resizing and converting one kept frame
    seek: float = SEEK_COST_FRAMES  # a seek, beyond the frames it decodes


def read_costs(
    packet_sizes: Sequence[int], pixels: int, reader: Reader = OPENCV_READER
) -> ReadCosts:
    """Costs estimated from each frame's packet size (presentation order) and the frame size:
    decode = fixed + bytes, fixed = DECODE_FIXED_BYTES_PER_PIXEL x pixels; normalised so the
    average frame costs 1. Seeking and converting as `reader` does."""
    fixed = DECODE_FIXED_BYTES_PER_PIXEL * pixels
    raw = [fixed + size for size in packet_sizes]
    mean = sum(raw) / len(raw) if raw else 1.0
    if mean <= 0:
        return ReadCosts([1.0] * len(raw))
    return ReadCosts(
        [cost / mean for cost in raw], convert=reader.convert * fixed / mean, seek=reader.cost
    )


def split(plan: Plan, parts: int, costs: ReadCosts | None = None) -> list[Plan]:
    """Cut the plan into at most `parts` plans, each reading its own run of targets from a
    seek (they can then run on separate decoders at once), such that the costliest part costs
    least: the time of the whole is the time of its slowest part. Without `costs`, every frame
    costs one decode. Without a keyframe index a plan cannot start anywhere but frame 0: it
    stays whole."""
    if parts <= 1 or not plan.keyframes or len(plan.steps) < 2:
        return [plan]
    model = _PartCosts(plan, costs or ReadCosts([]))
    targets = [step.target for step in plan.steps]
    cuts = model.balanced_cuts(min(parts, len(targets)))
    return [
        plan_reads(targets[a:b], plan.keyframes, plan.reader) for a, b in itertools.pairwise(cuts)
    ]


def landing(target: int, keyframes: list[int], reader: Reader = OPENCV_READER) -> int:
    """The keyframe a seek to `target` lands on (OpenCV's backs off SEEK_BACKOFF_FRAMES)."""
    aim = max(0, target - reader.backoff)
    return keyframes[max(0, bisect.bisect_right(keyframes, aim) - 1)]


class _PartCosts:
    """The cost of reading targets i..j-1 of a plan as one part on a fresh decoder."""

    def __init__(self, plan: Plan, costs: ReadCosts) -> None:
        keyframes = self._keyframes = plan.keyframes or [0]
        self._plan = plan
        self._costs = costs
        frames = list(costs.frames)
        # A frame the costs do not cover (none given, a short index) costs one average decode.
        frames += [1.0] * max(0, plan.steps[-1].target + 1 - len(frames))
        self._frames = frames
        self._decoded = list(itertools.accumulate(frames, initial=0.0))
        previous = -1
        steps: list[float] = []
        for step in plan.steps:
            if step.seek:
                key = landing(step.target, keyframes, plan.reader)
                steps.append(costs.seek + self._range(key, step.target))
            else:
                steps.append(self._range(previous + 1, step.target))
            previous = step.target
        self._steps = list(itertools.accumulate(steps, initial=0.0))
        self._firsts: dict[int, float] = {}

    def _range(self, first: int, last: int) -> float:
        return self._decoded[last + 1] - self._decoded[first]

    def _first(self, i: int) -> float:
        """Reaching target i first thing on a fresh decoder, as plan_reads would."""
        if i not in self._firsts:
            target = self._plan.steps[i].target
            reader = self._plan.reader
            if plan_reads([target], self._plan.keyframes, reader).steps[0].seek:
                key = landing(target, self._keyframes, reader)
                cost = self._costs.seek + self._range(key, target)
                if reader.first_frame:  # OpenCV decodes frame 0 before its first seek
                    cost += self._frames[0]
            else:
                cost = self._range(0, target)
            self._firsts[i] = cost
        return self._firsts[i]

    def part(self, i: int, j: int) -> float:
        inner = self._steps[j] - self._steps[i + 1]
        return self._first(i) + inner + self._costs.convert * (j - i)

    def _pair(self, low: int, high: int, cut: int) -> tuple[float, float]:
        """Two neighbouring parts cut at `cut`: the costlier first, then both together."""
        first, second = self.part(low, cut), self.part(cut, high)
        return max(first, second), first + second

    def balanced_cuts(self, parts: int) -> list[int]:
        """Cut points 0 = c0 < c1 < ... < c_parts = n: first at equal shares of the whole
        plan's cost, then each moved between its neighbours to where the costlier of its two
        parts costs least (exact for two parts), a few rounds over all cuts."""
        n = len(self._plan.steps)
        done = [self._steps[i] + self._costs.convert * i for i in range(n + 1)]
        cuts = [0]
        for k in range(1, parts):
            step = bisect.bisect_left(done, done[n] * k / parts)
            cuts.append(min(max(step, cuts[-1] + 1), n - (parts - k)))
        cuts.append(n)
        for _ in range(3):
            moved = False
            for k in range(1, parts):
                low, high = cuts[k - 1], cuts[k + 1]
                best = min(range(low + 1, high), key=functools.partial(self._pair, low, high))
                moved |= best != cuts[k]
                cuts[k] = best
            if not moved:
                break
        return cuts
