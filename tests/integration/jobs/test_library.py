"""Library search on both databases with the real models: vectors of the real
all-MiniLM-L6-v2 in sqlite-vec (SQLite) and pgvector (PostgreSQL 16 from pgserver), speech heard
by the real Whisper tiny.en from espeak-ng sentences, hybrid ranking against the labelled set of
tests/support/library.py."""

from __future__ import annotations

import time

import pytest

from deploy.config.search_settings import SearchSettings
from deploy.config.speech_settings import BUNDLED_ASR_MODEL, SpeechSettings
from deploy.core.errors import ServiceUnavailable
from deploy.core.jobs import JobState
from deploy.jobs import vector_index
from deploy.jobs.library import Library
from deploy.jobs.records import ChunkRecord, JobRecord
from deploy.jobs.store import Store
from deploy.speech.asr import SpeechModel
from deploy.video.audio import read_audio
from tests.support.library import (
    QUERIES,
    EncoderHandle,
    Response,
    encoder,
    fill,
    reciprocal_rank,
    synchronous,
)
from tests.support.speech import spoken, words


def library(store: Store, **settings: object) -> Library:
    return Library(store, EncoderHandle(), SearchSettings(**settings))  # type: ignore[arg-type]


@synchronous
async def test_hybrid_beats_either_alone_on_the_labelled_set(vector_store: Store) -> None:
    filled = fill(vector_store)
    lib = library(vector_store)
    documents = len(vector_index.pending(vector_store.db, lib.model or "", 1000))
    assert await lib.index() == documents > 0
    assert await lib.index() == 0  # nothing left to do
    mrr = {}
    for mode in ("text", "semantic", "hybrid"):
        ranks = []
        for query, video, index in QUERIES:
            found = await lib.search("alice", query, 10, mode)  # type: ignore[arg-type]
            span = filled.spans[(video, index)]
            ranks.append(reciprocal_rank(found.results, filled.job_ids[video], span))
        mrr[mode] = sum(ranks) / len(ranks)
    print(f"\n{vector_store.db.dialect}: mean reciprocal rank over {len(QUERIES)} queries", mrr)
    assert mrr["hybrid"] > mrr["text"]
    assert mrr["hybrid"] > mrr["semantic"]


SAID = {
    "depot.mp4": "Please remember to refuel the truck before noon.",
    "meeting.mp4": "The meeting starts at three in the afternoon.",
    "returns.mp4": "The package arrived damaged and was sent back today.",
}
QUERY = "filling up a lorry with diesel"  # no word in common with what was said
CHUNK_S = 10.0
SAID_AT = 12.0  # in the second chunk, [10, 20)


@pytest.fixture(scope="module")
def heard(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str | None]]:
    """Per video, each chunk's transcript lines, as the job runner keeps them: espeak-ng says
    the sentence at SAID_AT, the real Whisper tiny.en hears each 10 s chunk."""
    model = SpeechModel.load(SpeechSettings(model=BUNDLED_ASR_MODEL), threads=2)
    directory = tmp_path_factory.mktemp("said")
    result: dict[str, list[str | None]] = {}
    for video, sentence in SAID.items():
        path = spoken(directory / video, [(SAID_AT, sentence)], 3 * CHUNK_S)
        chunks: list[str | None] = []
        for index in range(3):
            clip = read_audio(str(path), 600.0, index * CHUNK_S, (index + 1) * CHUNK_S)
            assert clip is not None
            lines = model.transcribe(clip, clip.samples).lines()  # type: ignore[arg-type]
            chunks.append("\n".join(lines) or None)
        result[video] = chunks
    return result


@synchronous
async def test_a_query_sharing_no_word_with_the_speech_finds_the_video_and_time(
    vector_store: Store, heard: dict[str, list[str | None]]
) -> None:
    depot = heard["depot.mp4"][1]
    assert depot is not None
    assert "refuel" in depot.lower()
    said_words = {w for chunks in heard.values() for t in chunks if t for w in words(t)}
    assert not said_words & set(words(QUERY)), "the query must share no word with the speech"
    now = time.time()
    for n, (video, chunks) in enumerate(heard.items()):
        job_id = f"job_said{n}"
        vector_store.create_job(
            JobRecord(job_id, "alice", "captions", JobState.QUEUED, video, f"/d/{video}", {},
                      now, now)
        )  # fmt: skip
        for index, transcript in enumerate(chunks):
            span = (index * CHUNK_S, (index + 1) * CHUNK_S)
            chunk = ChunkRecord(job_id, index, *span, "A gray screen.", transcript=transcript)
            vector_store.record_chunk(chunk, "alice")
    lib = library(vector_store)
    await lib.index()
    by_words = await lib.search("alice", QUERY, 5, "text")
    assert by_words.results == []  # no word in common: the full-text index finds nothing
    found = await lib.search("alice", QUERY, 5)  # hybrid, the default
    best = found.results[0]
    assert (best.hit.video, best.hit.kind) == ("depot.mp4", "speech")
    assert (best.hit.start_s, best.hit.end_s) == (CHUNK_S, 2 * CHUNK_S)
    assert best.match == "semantic"
    assert best.similarity is not None
    assert best.similarity >= 0.25


@synchronous
async def test_only_vectors_of_the_current_model_are_searched_and_reindex_fills_in(
    vector_store: Store,
) -> None:
    fill(vector_store)
    db = vector_store.db
    total = len(vector_index.pending(db, "model-a", 1000))
    texts = vector_index.pending(db, "model-a", 1000)
    vectors = encoder().embed([text for _, text in texts])
    assert (
        vector_index.add(db, "model-a", list(zip([i for i, _ in texts], vectors, strict=True)))
        == total
    )
    assert vector_index.add(db, "model-a", [(texts[0][0], vectors[0])]) == 0  # kept once
    assert vector_index.pending(db, "model-a", 1000) == []
    assert vector_index.counts(db, "model-b", "alice") == (total, 0)  # all to do for model-b
    hits = vector_index.search(db, "alice", "model-b", vectors[0], 5)
    assert hits == []  # model-a's vectors are never compared with model-b's
    assert vector_index.search(db, "alice", "model-a", vectors[0], 1)[0].text == texts[0][1]
    assert vector_index.drop_other_models(db, "model-b") == total
    assert vector_index.counts(db, "model-a", None) == (total, 0)


@synchronous
async def test_a_deleted_job_takes_its_vectors_and_another_key_sees_none(
    vector_store: Store,
) -> None:
    mine = fill(vector_store, "alice")
    fill(vector_store, "bob")
    lib = library(vector_store)
    await lib.index()
    found = await lib.search("bob", "Zentrix", 50, "semantic")
    assert found.results
    assert all(r.hit.job_id.endswith("_bob") for r in found.results)
    before = vector_index.counts(vector_store.db, lib.model or "", "alice")
    assert vector_store.delete_job(mine.job_ids["meeting.mp4"], "alice")
    after = vector_index.counts(vector_store.db, lib.model or "", "alice")
    assert after[0] == after[1] < before[1]
    found = await lib.search("alice", "Zentrix", 50, "semantic")
    assert all(r.hit.video != "meeting.mp4" for r in found.results)


class _DownHandle(EncoderHandle):
    @property
    def embed(self) -> object:
        class _Method:
            def remote(self, texts: list[str]) -> object:
                async def down() -> None:
                    raise ServiceUnavailable("the embedding model is still loading; retry",
                                             code="embedding_loading")  # fmt: skip

                return Response(down())

        return _Method()


@synchronous
async def test_without_the_embedder_hybrid_answers_by_words_and_says_so(
    vector_store: Store,
) -> None:
    fill(vector_store)
    lib = Library(vector_store, _DownHandle(), SearchSettings())  # type: ignore[arg-type]
    found = await lib.search("alice", "Zentrix", 5)
    assert found.mode == "text"
    assert found.results[0].match == "text"
    assert "still loading" in (found.note or "")
    with pytest.raises(ServiceUnavailable):
        await lib.search("alice", "Zentrix", 5, "semantic")
    assert await lib.index() == 0  # left for later, never raised
