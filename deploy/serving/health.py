"""Backend health as it changes, said once per change.

A replica's `ready()` answers a `Readiness` value, never an exception: Ray Serve logs every
exception a replica method raises with its traceback, so a backend that is down (Ollama not
running, the usual case of a laptop without it) would flood the log with one traceback per
/readyz probe. `HealthLog` logs a backend going down once, with the reason, and coming back
once, with how long it was down; probes in between are silent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from deploy.core.errors import VidserveError


@dataclass(frozen=True)
class Readiness:
    """A backend's answer to a readiness probe: the model it serves, or why it cannot."""

    model: str = ""
    error: VidserveError | None = None

    def model_or_raise(self) -> str:
        if self.error is not None:
            raise self.error
        return self.model


class HealthLog:
    def __init__(
        self, name: str, logger: logging.Logger, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._name = name
        self._logger = logger
        self._clock = clock
        self.up: bool | None = None  # None: not probed yet
        self._down_since = 0.0
        self._reason = ""

    def update(self, up: bool, reason: str = "") -> None:
        if up and self.up is False:
            self._logger.warning(
                "%s is back after %.0f s down (it had been: %s)",
                self._name,
                self._clock() - self._down_since,
                self._reason,
            )
        elif up and self.up is None:
            self._logger.info("%s is up", self._name)
        elif not up and self.up is not False:
            self._logger.warning("%s is down: %s", self._name, reason)
            self._down_since = self._clock()
        if not up:
            self._reason = reason
        self.up = up

    def observe(self, readiness: Readiness) -> Readiness:
        self.update(readiness.error is None, readiness.error.message if readiness.error else "")
        return readiness
