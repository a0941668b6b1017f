"""An ASGI app on a real uvicorn server on loopback, in a thread: for tests that need real
sockets (bodies trickled byte by byte, streams held open while another request is sent)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp

from tests.support.ports import free_port


@contextmanager
def uvicorn_server(app: ASGIApp, start_timeout_s: float = 10.0) -> Iterator[int]:
    """The port it listens on; stopped on exit."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)
