"""Fuzz: a few hundred hostile variants of valid videos and images (tests/support/fuzz.py:
truncated, bytes flipped, headers corrupted, containers swapped, zero or absurd dimensions and
frame rates, many streams), from a fixed seed. Each must extract or be refused with a typed 4xx;
none may raise anything else or kill the process that decodes it (a worker process here,
standing for the extractor replica). A crasher is saved under tests/data/fuzz/ and replayed by
every run."""

from __future__ import annotations

import hashlib
import multiprocessing
import random
import subprocess
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.support.fuzz import MUTATIONS, many_streams, png_declaring, run_case
from tests.support.videos import encode_index, ffmpeg_exe, write_h264, write_opencv

SEED = 20261204
PER_MUTATION = 10
REGRESSIONS = Path(__file__).resolve().parents[2] / "data" / "fuzz"


def _bases(directory: Path) -> dict[str, tuple[bytes, str]]:
    h264 = write_h264(directory / "v.mp4", 30, 30.0, (160, 120), gop=10)
    mkv = directory / "v.mkv"
    subprocess.run(
        [ffmpeg_exe(), "-loglevel", "error", "-y", "-i", str(h264), "-c", "copy", str(mkv)],
        check=True,
    )
    avi = write_opencv(directory / "v.avi", "MJPG", 20, 25.0, (96, 64))
    image = encode_index(5, 96, 64)
    return {
        "mp4-h264": (h264.read_bytes(), "video"),
        "mkv-h264": (mkv.read_bytes(), "video"),
        "avi-mjpg": (avi.read_bytes(), "video"),
        "mkv-40-streams": (many_streams(h264, directory / "many.mkv", 40).read_bytes(), "video"),
        "png": (cv2.imencode(".png", image)[1].tobytes(), "image"),
        "jpeg": (cv2.imencode(".jpg", image)[1].tobytes(), "image"),
    }


def _cases(directory: Path) -> Iterator[tuple[str, bytes, str]]:
    rng = random.Random(SEED)
    bases = _bases(directory)
    for name, (data, kind) in bases.items():
        yield f"{name}/valid", data, kind
        for mutation, mutate in MUTATIONS.items():
            for round_ in range(PER_MUTATION):
                yield f"{name}/{mutation}/{round_}", mutate(data, rng), kind
    yield "png/declares-20000x20000", png_declaring(20000, 20000), "image"
    yield "png/declares-0x0", png_declaring(0, 0), "image"
    yield "video/empty", b"", "video"
    yield "video/zeros", np.zeros(4096, np.uint8).tobytes(), "video"
    for path in sorted(REGRESSIONS.glob("*.bin")):
        yield f"regression/{path.name}", path.read_bytes(), path.stem.split("-")[0]


def _pool() -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_hostile_media_is_extracted_or_refused_with_a_4xx_and_never_crashes(
    tmp_path: Path,
) -> None:
    outcomes: dict[str, list[str]] = {"ok": [], "4xx": []}
    problems: list[str] = []
    pool = _pool()
    try:
        for name, data, kind in _cases(tmp_path):
            try:
                verdict, status, detail = pool.submit(run_case, data, kind).result(timeout=60)
            except BrokenProcessPool:
                saved = _save_crasher(data, kind)
                problems.append(f"{name}: the decoding process died (saved as {saved})")
                pool = _pool()
                continue
            if verdict == "ok":
                outcomes["ok"].append(name)
            elif verdict == "error" and status is not None and 400 <= status < 500:
                outcomes["4xx"].append(name)
            else:
                problems.append(f"{name}: {verdict} {status} {detail}")
    finally:
        pool.shutdown()
    assert not problems, "\n".join(problems)
    total = len(outcomes["ok"]) + len(outcomes["4xx"])
    assert total >= 300
    # Both outcomes happen: the mutations are neither all harmless nor all fatal.
    assert len(outcomes["ok"]) > 20, outcomes["ok"]
    assert len(outcomes["4xx"]) > 100
    assert "png/declares-20000x20000" in outcomes["4xx"]


def _save_crasher(data: bytes, kind: str) -> Path:
    REGRESSIONS.mkdir(parents=True, exist_ok=True)
    path = REGRESSIONS / f"{kind}-{hashlib.sha256(data).hexdigest()[:16]}.bin"
    path.write_bytes(data)
    return path
