"""Keep Ray Serve's replica log handler alive through vLLM's logging set-up.

Starting a vLLM engine (`AsyncLLM`, inside Ray Serve LLM's `LLMServer.start`) sets vLLM's
logging up with `logging.config.dictConfig` (`vllm.logger.configure_logging_if_needed`), and
dictConfig
closes every handler that exists, including the `MemoryHandler` Ray Serve puts on the
`ray.serve` logger of each replica. A closed MemoryHandler has no target and never flushes:
from then on every log record of the replica (one access-log line per call) is kept in its
buffer forever, and none reaches the replica's log file. Measured: the VLLM replica grew about
2.8 MiB a minute under load (bench/chaos.py soak), all of it LogRecords in that buffer.

`serve_log_handlers_kept()` wraps the engine's start: the handlers' targets are put back after
it (the file handler reopens its file on the next record). `drop_dead_serve_handlers()` is the
backstop for a set-up that happened elsewhere: a handler left without a target is removed, so
the buffer cannot grow (those records are lost either way), and it says so once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from logging.handlers import MemoryHandler

logger = logging.getLogger("ray.serve.vidserve.logs")

SERVE_LOGGER = "ray.serve"


def _buffering_handlers() -> list[MemoryHandler]:
    return [h for h in logging.getLogger(SERVE_LOGGER).handlers if isinstance(h, MemoryHandler)]


@contextmanager
def serve_log_handlers_kept() -> Iterator[None]:
    """Whatever runs inside (something that configures logging) leaves Serve's handlers
    writing to their files."""
    kept = [(handler, handler.target) for handler in _buffering_handlers()]
    try:
        yield
    finally:
        for handler, target in kept:
            if handler.target is None and target is not None:
                handler.setTarget(target)


def drop_dead_serve_handlers() -> int:
    """Remove Serve's buffering handlers that lost their target (they would keep every record
    in memory); how many were removed."""
    dead = [handler for handler in _buffering_handlers() if handler.target is None]
    for handler in dead:
        logging.getLogger(SERVE_LOGGER).removeHandler(handler)
        handler.buffer.clear()
    if dead:
        logger.warning(
            "Ray Serve's log handler of this replica was closed by a logging set-up (vLLM's); "
            "removed it so its buffer does not grow: this replica's log file gets no more "
            "Serve records"
        )
    return len(dead)
