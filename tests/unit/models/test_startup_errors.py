"""Start-up failures said as what to change, from the real exceptions the libraries raise."""

from __future__ import annotations

import json
import shutil
import traceback
from pathlib import Path

import pytest
import torch

from deploy.dev.tiny_model import ensure_tiny_model
from deploy.models.startup_errors import ModelStartError, explain, preflight

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


def _copy(tiny: Path, tmp_path: Path, **config: object) -> Path:
    model = tmp_path / "model"
    shutil.copytree(tiny, model)
    data = json.loads((model / "config.json").read_text())
    data.update(config)
    (model / "config.json").write_text(json.dumps(data))
    return model


def test_a_quantization_that_does_not_match_the_weights(tiny: Path, tmp_path: Path) -> None:
    from vllm.engine.arg_utils import EngineArgs

    model = _copy(tiny, tmp_path, quantization_config={"quant_method": "awq", "bits": 4})
    with pytest.raises(Exception, match="does not match the quantization method") as raised:
        EngineArgs(model=str(model), quantization="gptq").create_model_config()
    message = explain(raised.value, str(model), {"quantization": "gptq"})
    assert message is not None
    assert message.startswith("llm.engine_kwargs.quantization ('gptq') does not match")
    assert "fix: remove llm.engine_kwargs.quantization" in message


def test_a_model_that_needs_trust_remote_code(tiny: Path, tmp_path: Path) -> None:
    from transformers import AutoConfig

    # A model type transformers does not know, with its code in the repository (auto_map).
    model = _copy(
        tiny,
        tmp_path,
        model_type="vidserve_custom",
        auto_map={"AutoConfig": "configuration_custom.CustomConfig"},
    )
    (model / "configuration_custom.py").write_text(
        "from transformers import PretrainedConfig\n\n"
        "class CustomConfig(PretrainedConfig):\n    model_type = 'vidserve_custom'\n"
    )
    with pytest.raises(ValueError, match="trust_remote_code") as raised:
        AutoConfig.from_pretrained(model, trust_remote_code=False)
    message = explain(raised.value, str(model), {})
    assert message is not None
    assert "fix: set llm.trust_remote_code: true" in message


def test_a_model_neither_cached_nor_downloadable() -> None:
    from huggingface_hub import snapshot_download

    with pytest.raises(Exception, match="snapshot") as raised:
        snapshot_download("Qwen/No-Such-Model-For-Vidserve", local_files_only=True)
    message = explain(raised.value, "Qwen/No-Such-Model-For-Vidserve", {})
    assert message is not None
    assert "neither in the local Hugging Face cache nor downloadable" in message
    assert "`vidserve download Qwen/No-Such-Model-For-Vidserve`" in message


def test_cuda_out_of_memory_names_the_settings_to_change() -> None:
    error = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    engine = {"max_model_len": 32768, "tensor_parallel_size": 1, "gpu_memory_utilization": 0.8}
    message = explain(error, "Qwen/Qwen2.5-VL-7B-Instruct", engine)
    assert message is not None
    assert "does not fit in the GPU memory" in message
    assert "max_model_len 32768" in message
    assert "fix: lower llm.max_model_len" in message


def test_an_unknown_failure_keeps_vllms_own_words() -> None:
    assert explain(RuntimeError("NCCL error: unhandled system error"), "m", {}) is None


def test_preflight_refuses_what_cannot_load(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert preflight(str(tiny)) is None
    incomplete = _copy(tiny, tmp_path)
    (incomplete / "model.safetensors").unlink()
    assert "lacks: weights (*.safetensors)" in (preflight(str(incomplete)) or "")
    assert "lacks: the directory itself" in (preflight(str(tmp_path / "nowhere")) or "")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    offline = preflight("Qwen/Qwen2.5-VL-7B-Instruct") or ""
    assert "neither in the local Hugging Face cache nor downloadable" in offline


def test_the_runner_finds_the_explanation_in_a_replicas_traceback() -> None:
    error = ModelStartError("the model is not downloaded: run `vidserve download X`")
    printed = "".join(traceback.format_exception(error))
    status = "The deployment failed to start.\n" + printed
    assert ModelStartError.explanation_in(status) == (
        "the model is not downloaded: run `vidserve download X`"
    )
    assert ModelStartError.explanation_in("RuntimeError: CUDA error") is None
