"""A question over several videos (`POST /v1/chat/completions` with `video_options.job_ids`,
or `video_options.search`): answered from the best-matching chunks of each video, which the
model is told to cite as `[video, mm:ss-mm:ss]`.

`job_ids` names the videos (jobs of the caller's key); `search` finds them: the library search
(hybrid) of its text, or of the question when it is `true`, the videos of its best results in
order, at most search.max_videos. In each video the chunks that best match the question (at most
search.per_video) are the context: their captions and what was said in them. No frames are
sent: the captions are what the model saw of each chunk when the job ran, so a question over
five hours of video costs a page of text. `recent_context` is the same for the last minutes
of a live stream (its windows are the chunks of its record)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from deploy.config.search_settings import SearchSettings
from deploy.core.errors import NotFound, UnprocessableInput
from deploy.core.messages import Role, Turn
from deploy.core.speech import clock
from deploy.jobs.library import Library
from deploy.jobs.records import ChunkRecord, JobRecord
from deploy.jobs.store import Store

PARAM = "video_options.job_ids"
STREAM_PARAM = "video_options.stream_id"
SAID_CHARS = 600  # what was said in a chunk, at most, beside its caption

INSTRUCTION = (
    "Below are excerpts of the user's videos: what was seen in each stretch of video and, "
    "after 'said:', what was heard. Each starts with its citation [video, mm:ss-mm:ss]. Answer "
    "the question from them alone, and after each thing you state put the citation of the "
    "excerpt it comes from, exactly as written. If the excerpts do not answer it, say so."
)


@dataclass(frozen=True)
class Source:
    job_id: str
    video: str
    start_s: float
    end_s: float
    match: str  # which search chose the chunk: text, semantic, both, or "first" (none matched)

    @property
    def citation(self) -> str:
        return f"[{self.video}, {clock(self.start_s)}-{clock(self.end_s)}]"

    def as_dict(self) -> dict[str, object]:
        return {
            "job_id": self.job_id,
            "video": self.video,
            "start_s": self.start_s,
            "end_s": self.end_s,
            "citation": self.citation,
            "match": self.match,
        }


@dataclass(frozen=True)
class LibraryContext:
    context: Turn  # a system turn: the instruction and the excerpts
    sources: list[Source]


async def library_context(
    store: Store,
    library: Library,
    settings: SearchSettings,
    owner: str,
    question: str,
    *,
    job_ids: tuple[str, ...] = (),
    search: str | None = None,
    max_chars: int = 16_000,
) -> LibraryContext:
    if job_ids:
        jobs = await _named(store, owner, job_ids)
    else:
        jobs = await _found(store, library, settings, owner, search or question)
    sources: list[Source] = []
    excerpts: list[str] = []
    for job in jobs:
        chunks = [c for c in await asyncio.to_thread(store.chunks, job.id) if c.ok]
        for chunk, match in await _best(
            library, settings, owner=owner, question=question, job_id=job.id, chunks=chunks
        ):
            source = Source(job.id, _name(job), chunk.start_s, chunk.end_s, match)
            sources.append(source)
            excerpts.append(_excerpt(source, chunk))
    if not excerpts:
        raise UnprocessableInput(
            "none of these videos has a captioned chunk yet; ask once their jobs have run",
            param=PARAM,
            code="job_not_ready",
        )
    text = _within("\n".join(excerpts), max_chars)
    return LibraryContext(Turn(Role.SYSTEM, f"{INSTRUCTION}\n\n{text}"), sources)


async def _named(store: Store, owner: str, job_ids: tuple[str, ...]) -> list[JobRecord]:
    jobs = []
    for job_id in dict.fromkeys(job_ids):
        job = await asyncio.to_thread(store.get_job, job_id, owner)
        if job is None:
            raise NotFound(f"no job {job_id!r}", param=PARAM, code="job_not_found")
        jobs.append(job)
    return jobs


async def _found(
    store: Store, library: Library, settings: SearchSettings, owner: str, query: str
) -> list[JobRecord]:
    found = await library.search(owner, query, settings.candidates)
    job_ids = list(dict.fromkeys(r.hit.job_id for r in found.results))[: settings.max_videos]
    if not job_ids:
        raise UnprocessableInput(
            f"no video of yours matches {query[:80]!r}: name the videos with "
            "video_options.job_ids, or search for other words",
            param="video_options.search",
            code="nothing_found",
        )
    return await _named(store, owner, tuple(job_ids))


async def _best(
    library: Library,
    settings: SearchSettings,
    *,
    owner: str,
    question: str,
    job_id: str,
    chunks: list[ChunkRecord],
) -> list[tuple[ChunkRecord, str]]:
    """The chunks of one job that best match the question, in the video's order."""
    by_start = {c.start_s: c for c in chunks}
    found = await library.search(owner, question, settings.candidates, job_id=job_id)
    chosen: dict[float, tuple[ChunkRecord, str]] = {}
    for ranked in found.results:
        chunk = by_start.get(ranked.hit.start_s)
        if chunk is not None and ranked.hit.kind != "chapter" and chunk.start_s not in chosen:
            chosen[chunk.start_s] = (chunk, ranked.match)
        if len(chosen) == settings.per_video:
            break
    if not chosen:  # nothing matched: the video's opening is better than nothing
        chosen = {c.start_s: (c, "first") for c in chunks[: settings.per_video]}
    return [chosen[start] for start in sorted(chosen)]


async def recent_context(
    store: Store, owner: str, job_id: str, *, last_s: float, max_chars: int = 16_000
) -> LibraryContext:
    """A question about the last `last_s` seconds of a live stream (`video_options.stream_id`):
    every window recorded in them, oldest first, as excerpts to cite (text: what the model saw
    of each window when it was captioned)."""
    job = await asyncio.to_thread(store.get_job, job_id, owner)
    if job is None:
        raise NotFound(f"no stream {job_id!r}", param=STREAM_PARAM, code="stream_not_found")
    now_s = time.time() - job.created_at
    chunks = [
        c
        for c in await asyncio.to_thread(store.chunks, job.id)
        if c.ok and c.end_s > now_s - last_s
    ]
    if not chunks:
        raise UnprocessableInput(
            f"no window of this stream was captioned in the last {last_s:g} s; ask about a "
            "longer stretch (video_options.last_s) or once it has run",
            param=STREAM_PARAM,
            code="stream_not_ready",
        )
    sources = [Source(job.id, _name(job), c.start_s, c.end_s, "recent") for c in chunks]
    text = _within(
        "\n".join(_excerpt(s, c) for s, c in zip(sources, chunks, strict=True)), max_chars
    )
    return LibraryContext(Turn(Role.SYSTEM, f"{INSTRUCTION}\n\n{text}"), sources)


def _name(job: JobRecord) -> str:
    """A video's name in a citation: its file name, without brackets or commas that would
    make the citation ambiguous."""
    name = job.video.rsplit("/", 1)[-1] or job.id
    return name.replace("[", "(").replace("]", ")").replace(",", " ")


def _excerpt(source: Source, chunk: ChunkRecord) -> str:
    line = f"{source.citation} {chunk.text}"
    if chunk.transcript:
        said = " ".join(part.split("] ", 1)[-1] for part in chunk.transcript.splitlines())
        line += f"\n  said: {said[:SAID_CHARS]}"
    return line


def _within(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    kept = text[:max_chars].rsplit("\n", 1)[0]
    return f"{kept}\n[... more excerpts left out]"
