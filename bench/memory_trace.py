"""What grows inside the replicas under load: Python objects by type and allocations by
traceback, diffed between two moments (how the soak's two leaks were found).

    python bench/memory_trace.py [--warmup-min 3] [--measure-min 8] [--deployments Ingress VLLM]

Starts the app as bench/chaos.py does, runs its mixed load (4 clients), and after the warm-up
starts tracemalloc and counts gc-tracked objects by type inside each named replica (through the
actor's `__ray_call__`); after --measure-min it prints, per replica, the object types that grew
and the allocation sites that grew most.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import ray

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.chaos import BOUND_S, MODEL_ID, running_app  # noqa: E402
from tests.support.load import LoadClient, Media, replica_actors, replica_rss, run_load  # noqa: E402


def _type_counts() -> Any:
    import collections
    import gc

    gc.collect()
    return collections.Counter(
        f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects()
    )


def start_tracing(_replica: object) -> int:
    """Runs inside the replica: the baseline."""
    import builtins
    import tracemalloc

    tracemalloc.start(12)
    builtins._vidserve_counts = _type_counts()  # type: ignore[attr-defined]
    builtins._vidserve_snapshot = tracemalloc.take_snapshot()  # type: ignore[attr-defined]
    return len(builtins._vidserve_counts)  # type: ignore[attr-defined]


def grown(_replica: object) -> str:
    """Runs inside the replica: what grew since `start_tracing`."""
    import builtins
    import tracemalloc

    counts = _type_counts() - builtins._vidserve_counts  # type: ignore[attr-defined]
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    lines = ["objects grown:"] + [f"  {n:+8d} {name}" for name, n in counts.most_common(20)]
    lines.append("allocations grown, by site:")
    for stat in snapshot.compare_to(builtins._vidserve_snapshot, "traceback")[:6]:  # type: ignore[attr-defined]
        lines.append(f"  {stat.size_diff / 1024:+9.0f} KiB {stat.count_diff:+8d} blocks")
        lines += [f"      {line}" for line in stat.traceback.format()[-8:]]
    return "\n".join(lines)


def call(deployment: str, function: Any) -> Any:
    actor = ray.get_actor(replica_actors(deployment)[0], namespace="serve")
    return ray.get(actor.__ray_call__.remote(function), timeout=300)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup-min", type=float, default=3.0)
    parser.add_argument("--measure-min", type=float, default=8.0)
    parser.add_argument("--deployments", nargs="+", default=["Ingress", "VLLM"])
    options = parser.parse_args()
    media = Media.make(Path(tempfile.mkdtemp(prefix="vidserve-trace-")))
    with running_app() as app:
        client = LoadClient(app.url, MODEL_ID, media, BOUND_S)
        seconds = (options.warmup_min + options.measure_min) * 60 + 5
        load = threading.Thread(
            target=lambda: asyncio.run(
                run_load(client, requests=10**9, seconds=seconds, concurrency=4)
            )
        )
        load.start()
        time.sleep(options.warmup_min * 60)
        print("RSS MiB:", {k: v >> 20 for k, v in replica_rss().items()}, flush=True)
        for deployment in options.deployments:
            call(deployment, start_tracing)
        time.sleep(options.measure_min * 60)
        print("RSS MiB:", {k: v >> 20 for k, v in replica_rss().items()}, flush=True)
        for deployment in options.deployments:
            print(f"===== {deployment}\n{call(deployment, grown)}", flush=True)
        load.join()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
