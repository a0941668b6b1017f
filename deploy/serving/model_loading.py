"""A model a replica loads in the background, for the Transcriber and the Embedder: loading
starts when the replica does, in the replica's one worker thread (where the model then runs), so
a model that cannot load (a package missing, a hub id offline) never keeps the app from starting;
each call waits for it, or gets a 503 that says whether to retry (still loading) or what to
change (could not load)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

import ray

from deploy.core.errors import ServiceUnavailable

M = TypeVar("M")


def replica_device(setting: str) -> tuple[str, int]:
    """(device, CPU threads) from what Ray gave this replica: `setting` auto|cpu|cuda, auto
    meaning cuda when the replica has a GPU."""
    resources = ray.get_runtime_context().get_assigned_resources()
    threads = max(1, round(float(resources.get("CPU", 1.0))))
    if setting != "auto":
        return setting, threads
    return ("cuda" if resources.get("GPU", 0) > 0 else "cpu"), threads


@dataclass(frozen=True)
class LoadErrors:
    what: str  # e.g. "the speech model 'tiny.en'"
    loading_code: str
    failed_code: str
    fix: str  # what to change when it cannot load


class BackgroundModel(Generic[M]):
    def __init__(self, load: Callable[[], M], errors: LoadErrors, thread_name: str) -> None:
        self.pool = ThreadPoolExecutor(1, thread_name_prefix=thread_name)
        self._model: Future[M] = self.pool.submit(load)
        self._errors = errors

    async def get(self, timeout_s: float) -> M:
        errors = self._errors
        try:
            return await asyncio.wait_for(asyncio.wrap_future(self._model), timeout_s)
        except TimeoutError:
            raise ServiceUnavailable(
                f"{errors.what} is still loading; retry shortly",
                code=errors.loading_code,
                details={"retry_after_s": 5},
            ) from None
        except ServiceUnavailable:
            raise
        except Exception as exc:
            raise ServiceUnavailable(
                f"{errors.what} could not be loaded: {exc}; {errors.fix}",
                code=errors.failed_code,
            ) from exc
