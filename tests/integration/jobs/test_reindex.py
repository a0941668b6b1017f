"""`vidserve reindex` after the embedding model changes: vectors are stored with their model and
only the current model's are searched; until the command has run a search says how many texts
it could only find by their words; the command embeds them (resumable, each kept once) and
--drop-other-models deletes the old model's vectors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from deploy.cli.main import main
from deploy.config.search_settings import BUNDLED_EMBEDDING_MODEL, SearchSettings
from deploy.config.settings import JobsSettings, StoreSettings
from deploy.embedding.encoder import model_directory
from deploy.jobs import vector_index
from deploy.jobs.library import Library
from deploy.jobs.store import open_store
from tests.support.library import EncoderHandle, fill, synchronous


def _reindex(url: str, data: Path, model: str, *more: str) -> int:
    sets = [f"store.url={url}", f"jobs.data_dir={data}", f"search.model={model}"]
    return main(["reindex", "--profile", "cpu", *(a for s in sets for a in ("--set", s)), *more])


@synchronous
async def test_a_new_model_is_searched_once_reindex_has_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    store = open_store(StoreSettings(url=url), JobsSettings(data_dir=tmp_path), vectors=True)
    fill(store)
    assert _reindex(url, tmp_path, BUNDLED_EMBEDDING_MODEL) == 0
    first = capsys.readouterr().out
    total, indexed = vector_index.counts(store.db, "sentence-transformers/all-MiniLM-L6-v2")
    assert total == indexed > 0
    assert f"done: {total} texts embedded" in first
    assert _reindex(url, tmp_path, BUNDLED_EMBEDDING_MODEL) == 0  # nothing left: resumable
    assert "done: 0 texts embedded" in capsys.readouterr().out

    # The model changes (a copy of the weights under another name stands for a new model).
    new_model = tmp_path / "minilm-v2-copy"
    shutil.copytree(model_directory(BUNDLED_EMBEDDING_MODEL), new_model)
    changed = Library(store, EncoderHandle(), SearchSettings(model=str(new_model)))  # type: ignore[arg-type]
    before = await changed.search("alice", "slicing vegetables", 5)
    assert before.unindexed == total
    assert f"{total} of this key's {total} texts have no vector of minilm-v2-copy" in (
        before.note or ""
    )
    assert all(r.match == "text" for r in before.results)  # old vectors are not compared

    assert _reindex(url, tmp_path, str(new_model), "--drop-other-models") == 0
    out = capsys.readouterr().out
    assert f"model minilm-v2-copy: 0 of {total} texts have a vector" in out
    assert f"deleted {total} vectors of other models" in out
    assert vector_index.counts(store.db, "minilm-v2-copy") == (total, total)
    assert vector_index.counts(store.db, "sentence-transformers/all-MiniLM-L6-v2") == (total, 0)
    after = await changed.search("alice", "slicing vegetables", 5, "semantic")
    assert after.note is None
    assert after.results[0].hit.text.startswith("A woman chops onions")
    store.close()


def test_reindex_with_semantic_search_off_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    code = main(["reindex", "--profile", "cpu", "--set", f"store.url={url}",
                 "--set", "search.semantic=false"])  # fmt: skip
    assert code == 2
    assert "search.semantic is off" in capsys.readouterr().out
