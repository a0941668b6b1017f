"""The CPU fix-ups (deploy/dev/cpu_fixes.py, installed as a .pth hook by scripts/setup_env.py):
vLLM's CPU runner, once imported, sets the video-pruning flag its load_model forgets."""

from __future__ import annotations

import types
from typing import Any

import pytest

from deploy.dev.cpu_fixes import patch_cpu_runner


def _module(pruning: bool) -> Any:
    class Config:
        def is_multimodal_pruning_enabled(self) -> bool:
            return pruning

    class CPUModelRunner:
        is_multimodal_pruning_enabled = False

        def __init__(self) -> None:
            self.model_config = types.SimpleNamespace(multimodal_config=Config())
            self.loaded = False

        def load_model(self, load_dummy_weights: bool = False) -> None:
            self.loaded = True

        def get_model(self) -> Any:
            return object()

    return types.SimpleNamespace(CPUModelRunner=CPUModelRunner)


@pytest.mark.parametrize("pruning", [True, False])
def test_load_model_then_sets_the_flag_as_the_gpu_runner_does(
    pruning: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vllm.model_executor.models import interfaces

    monkeypatch.setattr(interfaces, "supports_multimodal_pruning", lambda model: True)
    module = _module(pruning)
    patch_cpu_runner(module)
    patch_cpu_runner(module)  # twice is once
    runner = module.CPUModelRunner()
    runner.load_model()
    assert runner.loaded
    assert runner.is_multimodal_pruning_enabled is pruning


def test_the_venvs_vllm_cpu_runner_is_patched_on_import() -> None:
    """The hook runs in every process of the venv: vLLM's own class, as imported, has it."""
    import torch

    if torch.version.cuda is not None:
        pytest.skip("the CPU fix-ups are installed by the cpu profile only")
    cpu_model_runner = pytest.importorskip("vllm.v1.worker.cpu_model_runner")
    assert getattr(cpu_model_runner.CPUModelRunner, "_vidserve_pruning_fix", False)
