"""How to reach the chosen frames with the least decoding: grab forward, or seek.

A decoder can only start at a keyframe. To reach frame `t` from the next frame to decode `p`:

    grab forward:  t - p + 1 decodes                         (only when t >= p)
    seek:          SEEK_COST + t - key(t - BACKOFF) + 1      (key(i): last keyframe at or before i)

OpenCV's FFmpeg backend seeks to BACKOFF (16) frames before the target, lands on the keyframe
before that, and decodes forward to the target: that is what a seek costs (measured in
bench/extract.py: a seek to a keyframe costs a whole previous GOP, one 30 frames into it 30).
For each chosen frame, in order, the plan takes the cheaper of the two, so dense choices become
one sequential pass and sparse ones a seek per frame (or per group of frames in one GOP). The
seek overhead, in frame decodes, is measured by `bench/extract.py` (it prints it).

A long plan can be `split` into parts of equal work that run on separate decoders at once.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

# Beyond the frames decoded, a seek costs about this many frame decodes (demuxer reset, decoder
# flush); bench/extract.py measures it (6.7 at 1080p, 7.6 at 720p on the development machine).
SEEK_COST_FRAMES = 7.0
# OpenCV (cap_ffmpeg_impl.hpp) seeks to this many frames before the target, then decodes forward.
SEEK_BACKOFF_FRAMES = 16


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

    @property
    def seeks(self) -> int:
        return sum(step.seek for step in self.steps)


def plan_reads(
    targets: list[int], keyframes: list[int] | None, seek_cost: float = SEEK_COST_FRAMES
) -> Plan:
    """The cheapest way to decode `targets` (sorted, distinct frame indices). Without a
    keyframe index (`None`: unknown) the plan is one sequential pass."""
    sequential = targets[-1] + 1 if targets else 0
    if not keyframes:
        in_order = [Step(t, False, t - p) for t, p in zip(targets, [-1, *targets], strict=False)]
        return Plan(in_order, sequential, sequential)
    steps: list[Step] = []
    position = 0  # the next frame a grab would decode
    decodes = 0
    for target in targets:
        landing = max(0, target - SEEK_BACKOFF_FRAMES)
        key = keyframes[max(0, bisect.bisect_right(keyframes, landing) - 1)]
        forward = target - position + 1 if target >= position else None
        seek = seek_cost + target - key + 1
        if forward is not None and forward <= seek:
            steps.append(Step(target, False, forward))
            decodes += forward
        else:
            steps.append(Step(target, True, target - key + 1))
            decodes += target - key + 1
        position = target + 1
    return Plan(steps, decodes, sequential, keyframes)


def split(plan: Plan, parts: int) -> list[Plan]:
    """Cut the plan into at most `parts` plans of about equal decoding work, each reading its
    own run of targets from a seek (they can then run on separate decoders at once). Without a
    keyframe index a plan cannot start anywhere but frame 0: it stays whole."""
    if parts <= 1 or not plan.keyframes or len(plan.steps) < 2:
        return [plan]
    share = plan.decodes / parts
    groups: list[list[int]] = [[]]
    done = 0
    for step in plan.steps:
        if groups[-1] and done >= share * len(groups) and len(groups) < parts:
            groups.append([])
        groups[-1].append(step.target)
        done += step.decodes
    return [plan_reads(group, plan.keyframes) for group in groups]
