"""Ray Serve's replica log handler survives vLLM's logging set-up: without the mend, starting
an engine (vLLM's own configure_logging_if_needed) closes it and every later record stays in its
buffer (the VLLM replica's leak found by the soak)."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from logging.config import dictConfig
from logging.handlers import MemoryHandler, RotatingFileHandler
from pathlib import Path

import pytest

from deploy.serving.serve_logs import (
    SERVE_LOGGER,
    drop_dead_serve_handlers,
    serve_log_handlers_kept,
)

ROOT = Path(__file__).resolve().parents[3]

# As Ray Serve configures a replica: a MemoryHandler on `ray.serve` writing to the log file.
SETUP = """
import logging, sys
from logging.handlers import MemoryHandler, RotatingFileHandler
serve = logging.getLogger("ray.serve")
serve.setLevel(logging.INFO)
serve.propagate = False
handler = MemoryHandler(capacity=1, target=RotatingFileHandler(sys.argv[1]))
serve.addHandler(handler)
"""


def _replica_log_after_import(tmp_path: Path, body: str) -> tuple[int, str]:
    """Records left in Serve's buffer after 300 access-log lines, and the log file's text."""
    log = tmp_path / "replica.log"
    script = (
        SETUP
        + textwrap.dedent(body)
        + textwrap.dedent("""
        for n in range(300):
            logging.getLogger("ray.serve").info("CALL answer OK %d", n)
        print(len(handler.buffer))
        """)
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(log)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=True,
    )
    return int(done.stdout.strip().splitlines()[-1]), log.read_text() if log.exists() else ""


@pytest.mark.parametrize("mended", [False, True])
def test_vllms_logging_set_up_keeps_serves_handler(tmp_path: Path, mended: bool) -> None:
    configure = (
        "from vllm.config.logging import LoggingConfig\n"
        "from vllm.logger import configure_logging_if_needed\n"
    )
    if mended:  # as VideoLLMServer.start wraps the engine's start
        body = configure + (
            "from deploy.serving.serve_logs import serve_log_handlers_kept\n"
            "with serve_log_handlers_kept():\n"
            "    configure_logging_if_needed(LoggingConfig())\n"
        )
    else:
        body = configure + "configure_logging_if_needed(LoggingConfig())\n"
    buffered, text = _replica_log_after_import(tmp_path, body)
    if mended:
        assert buffered == 0
        assert "CALL answer OK 299" in text
    else:  # the leak this guards against: every record kept, none written
        assert buffered == 300
        assert "CALL answer OK" not in text


def test_a_handler_closed_earlier_is_removed_so_nothing_accumulates(tmp_path: Path) -> None:
    serve = logging.getLogger(SERVE_LOGGER)
    handler = MemoryHandler(capacity=1, target=RotatingFileHandler(tmp_path / "x.log"))
    serve.addHandler(handler)
    try:
        handler.close()  # as dictConfig does
        assert drop_dead_serve_handlers() == 1
        assert handler not in serve.handlers
    finally:
        serve.removeHandler(handler)


def test_kept_puts_the_target_back_after_a_dict_config(tmp_path: Path) -> None:
    serve = logging.getLogger(SERVE_LOGGER)
    target = RotatingFileHandler(tmp_path / "y.log")
    handler = MemoryHandler(capacity=1, target=target)
    serve.addHandler(handler)
    try:
        with serve_log_handlers_kept():
            dictConfig({"version": 1, "disable_existing_loggers": False})
        assert handler.target is target
    finally:
        serve.removeHandler(handler)
