"""Fixtures shared by the unit tests."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from deploy.video import av_read


@pytest.fixture(params=["pyav", "opencv"])
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with each frame reader: PyAV where it reads the stream (av_read), and OpenCV
    alone (as without PyAV installed)."""
    if request.param == "opencv":
        monkeypatch.setattr(av_read, "av", None)
    return str(request.param)


@pytest.fixture(autouse=True, scope="module")
def _no_server() -> Iterator[None]:
    """The unit tier starts no server (docs/testing.md): a test that listens on a socket belongs
    in tests/integration. Module-scoped, so it is in place before any module fixture starts."""

    def refuse(self: socket.socket, backlog: int = 0) -> None:
        raise AssertionError(
            "a unit test started a server (socket.listen): move it to tests/integration"
        )

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "listen", refuse)
        yield
