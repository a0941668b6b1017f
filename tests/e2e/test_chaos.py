"""Chaos: under a bounded load of mixed requests (uploads, images, text, streamed video chat),
a FrameExtractor replica, the Ingress replica and the vLLM replica are killed in turn (as crashes)
and the Ollama server is stopped for a while. Every request is answered, a 200 or a 503/504 in
the JSON shape, within its bound; none hangs; the app recovers by itself (vLLM ready again, and
one request of each kind answered 200). The real app on its own local Ray, the real engine on
the tiny model, real HTTP clients (bench/chaos.py runs the same, longer, and prints the table)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import chaos as bench

from tests.load import KINDS, Media


def test_every_request_is_answered_while_replicas_die_and_the_app_recovers(
    tmp_path: Path,
) -> None:
    media = Media.make(tmp_path)
    with bench.running_app() as app:
        result = bench.chaos(app, media, seconds=60, requests=100_000, concurrency=4)
        bench.print_chaos(result, app.faults)
    assert len(app.faults) == 5, app.faults  # each fault was injected
    load = result.load
    problems = load.problems(bench.ALLOWED)
    assert not problems, [(o.kind, o.status, o.detail) for o in problems[:10]]
    statuses = load.by_status()
    assert statuses[200] > len(load.outcomes) / 2, load.summary()  # mostly served throughout
    assert result.after == dict.fromkeys(KINDS, 200)
