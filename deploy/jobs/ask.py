"""A question about a video a job has analyzed (`POST /v1/chat/completions` with
`video_options.job_id`): the model gets the job's timestamped captions as context and the frames
of the chunk that best matches the question (full-text search over the job's captions), so a
question about an hour of video costs one chunk's frames, not the hour's."""

from __future__ import annotations

from dataclasses import dataclass

from deploy.core.errors import Gone, NotFound, UnprocessableInput
from deploy.core.messages import Role, SamplingOptions, Turn
from deploy.jobs.plan import Piece, chunk_sampling, lines
from deploy.jobs.records import JobRecord
from deploy.jobs.store import Store
from deploy.serving.pipeline import MediaSource

PARAM = "video_options.job_id"


@dataclass(frozen=True)
class JobContext:
    media: MediaSource
    sampling: SamplingOptions
    captions: Turn  # a system turn: the job's captions, with timestamps
    span: tuple[float, float]  # the chunk whose frames are sent


def job_context(store: Store, job_id: str, owner: str, question: str, max_chars: int) -> JobContext:
    """Blocking (the store): run it in a thread. 404 for no such job (or another key's), 422
    for a job with no caption yet."""
    job = store.get_job(job_id, owner)
    if job is None:
        raise NotFound(f"no job {job_id!r}", param=PARAM, code="job_not_found")
    if job.media_removed_at is not None:
        raise Gone(
            f"the video of job {job_id} was deleted (jobs.media_retention_s, or the job was "
            f"cancelled); its captions and result are kept: GET /v1/video/jobs/{job_id}",
            param=PARAM,
            code="job_media_deleted",
        )
    chunks = [c for c in store.chunks(job.id) if c.ok]
    if not chunks:
        raise UnprocessableInput(
            f"job {job_id} has no captioned chunk yet ({job.state.value}); ask once it has",
            param=PARAM,
            code="job_not_ready",
        )
    hits = [h for h in store.search(owner, question, 5, job_id=job.id) if h.kind == "caption"]
    best = next((c for c in chunks if hits and c.start_s == hits[0].start_s), chunks[0])
    pieces = [Piece(c.start_s, c.end_s, c.text or "", c.tokens) for c in chunks]
    text = _within(lines(pieces), max_chars)
    return JobContext(
        media=MediaSource(param=PARAM, file=job.source),
        sampling=chunk_sampling((best.start_s, best.end_s), _frames(job)),
        captions=Turn(
            Role.SYSTEM,
            f"Timestamped descriptions of the whole video ({job.video}):\n{text}\n\nThe frames "
            f"shown are from {lines([Piece(best.start_s, best.end_s, '', 0)]).strip()}.",
        ),
        span=(best.start_s, best.end_s),
    )


def _frames(job: JobRecord) -> int:
    return int(job.spec.get("frames_per_chunk") or 8)


def _within(text: str, max_chars: int) -> str:
    """At most `max_chars`: whole lines from the start, then a note of what was left out."""
    if len(text) <= max_chars:
        return text
    kept = text[:max_chars].rsplit("\n", 1)[0]
    return f"{kept}\n[... {text.count(chr(10)) - kept.count(chr(10))} more lines left out]"
