"""Let PyPI's (CUDA) torchvision import beside a CPU-only torch.

`scripts/setup_env.py` copies this file into site-packages as `vidserve_torchvision_fix.py` with a
`.pth` line that imports it, so it runs in every Python process of the venv (Ray and vLLM spawn
their own). It installs an import hook: right before `torchvision` is first imported, it defines the
two operator schemas torchvision's `_meta_registrations.py` registers fakes for, whose compiled
kernels cannot load beside a CPU torch. It does nothing when torch has CUDA or torchvision is a
`+cpu` build. Only torchvision's pure-Python transforms (what transformers' Qwen2-VL processors use)
work afterwards; its compiled ops stay unavailable.
"""

from __future__ import annotations

import importlib.abc
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


def install() -> None:
    if "torchvision" not in sys.modules and not any(
        isinstance(finder, _BeforeTorchvision) for finder in sys.meta_path
    ):
        sys.meta_path.insert(0, _BeforeTorchvision())


install()
