from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from deploy.config.settings import (
    Accelerator,
    AppArgs,
    ExtractionSettings,
    LLMSettings,
    ModelSourceKind,
    classify_model_source,
    default_model_id,
)


def test_engine_defaults() -> None:
    """trust_remote_code is off: a model repository's own code never runs unless asked for."""
    kwargs = LLMSettings().vllm_engine_kwargs()
    assert kwargs == {
        "max_model_len": 8192,
        "gpu_memory_utilization": 0.80,
        "tensor_parallel_size": 1,
        "dtype": "half",
        "trust_remote_code": False,
    }
    assert LLMSettings().model == "Qwen/Qwen2.5-VL-7B-Instruct"


def test_other_engine_arguments_pass_through() -> None:
    settings = LLMSettings(engine_kwargs={"enforce_eager": True, "max_num_seqs": 4})
    assert settings.vllm_engine_kwargs()["enforce_eager"] is True
    assert settings.vllm_engine_kwargs()["max_num_seqs"] == 4


def test_unknown_engine_argument_is_rejected_by_name_with_a_suggestion() -> None:
    with pytest.raises(ValidationError) as info:
        LLMSettings(engine_kwargs={"enforce_eagr": True})
    message = str(info.value)
    assert "'enforce_eagr'" in message
    assert "did you mean 'enforce_eager'" in message


def test_first_class_argument_in_engine_kwargs_is_rejected() -> None:
    with pytest.raises(ValidationError, match=r"set llm\.max_model_len instead"):
        LLMSettings(engine_kwargs={"max_model_len": 1024})


def test_unknown_field_is_rejected() -> None:
    with pytest.raises(ValidationError, match="max_model_length"):
        AppArgs.model_validate({"llm": {"max_model_length": 10}})


@pytest.mark.parametrize(
    ("field", "value"),
    [("gpu_memory_utilization", 1.5), ("tensor_parallel_size", 0), ("dtype", "int3")],
)
def test_out_of_range_engine_settings_are_rejected(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        LLMSettings.model_validate({field: value})


def test_env_overrides_model_and_accelerator(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("VLLM_MODEL_PATH", str(tmp_path))
    monkeypatch.setenv("VIDSERVE_ACCELERATOR", "cpu")
    args = AppArgs.from_args({"llm": {"model": "Qwen/Qwen2.5-VL-3B-Instruct"}})
    assert args.llm.model == str(tmp_path)
    assert args.llm.accelerator is Accelerator.CPU
    assert args.llm.served_model_id == tmp_path.name


def test_args_model_is_used_without_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VLLM_MODEL_PATH", raising=False)
    args = AppArgs.from_args({"llm": {"model": "Qwen/Qwen2.5-VL-3B-Instruct"}})
    assert args.llm.served_model_id == "Qwen/Qwen2.5-VL-3B-Instruct"


def test_model_source_kinds(tmp_path: Path) -> None:
    snapshot = tmp_path / "hub" / "models--Qwen--Qwen2.5-VL-7B-Instruct" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    assert classify_model_source("Qwen/Qwen2.5-VL-7B-Instruct") is ModelSourceKind.HF_ID
    assert classify_model_source(str(tmp_path)) is ModelSourceKind.LOCAL_DIR
    assert classify_model_source(str(snapshot)) is ModelSourceKind.HF_CACHE_SNAPSHOT
    assert default_model_id(str(snapshot)) == "Qwen/Qwen2.5-VL-7B-Instruct"


def test_bad_model_source_says_what_to_set() -> None:
    with pytest.raises(ValidationError, match="VLLM_MODEL_PATH"):
        LLMSettings(model="not a model id")


def test_extraction_limits_must_be_consistent() -> None:
    with pytest.raises(ValidationError, match="default_num_frames"):
        ExtractionSettings(default_num_frames=10, max_num_frames=5)
    with pytest.raises(ValidationError, match="min_pixels"):
        ExtractionSettings(min_pixels=10_000, max_pixels=100)
