"""How many CPUs decoding uses: the replica's (use_cpus), shared by every decoder of this
process; OpenCV's own pool goes to one thread while parallel parts run."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import cv2


@dataclasses.dataclass
class Threads:
    cpus: int  # CPUs to decode with (use_cpus): the machine's until the deployment sets its own
    parallel_reads: int = 0  # reads in parallel parts under way (OpenCV's pool is at 1 meanwhile)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


THREADS = Threads(max(1, cv2.getNumberOfCPUs()))


def use_cpus(cpus: int) -> None:
    """Decode with `cpus` CPUs (the replica's, not the machine's: a 2-CPU replica on a 64-core
    node must not start 64 decoder threads): one decoder with that many threads, or a long plan
    split between that many single-threaded decoders; OpenCV's own pool (resizing, colour
    conversion) gets as many threads, except while parts run (parts_convert_alone)."""
    with THREADS.lock:
        THREADS.cpus = max(1, cpus)
        if THREADS.parallel_reads == 0:
            cv2.setNumThreads(THREADS.cpus)


@contextmanager
def parts_convert_alone() -> Iterator[None]:
    """While one decoder per CPU runs, each part converts its frames on its own thread: with
    OpenCV's pool on, a part's resize hands stripes to a pool worker that competes for the
    cores with the other decoders, and the part stalls until that worker gets one (measured on
    2 cores, 128 frames of 1080p: 3-4% more wall time; `python bench/extract.py --ablation`).
    The pool gets use_cpus' count back when the last parallel read ends."""
    with THREADS.lock:
        THREADS.parallel_reads += 1
        cv2.setNumThreads(1)
    try:
        yield
    finally:
        with THREADS.lock:
            THREADS.parallel_reads -= 1
            if THREADS.parallel_reads == 0:
                cv2.setNumThreads(THREADS.cpus)
