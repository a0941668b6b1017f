"""The unit tier's own rule holds: a unit test cannot start a server (tests/unit/conftest.py)."""

from __future__ import annotations

import socket

import pytest


def test_listening_on_a_socket_fails_a_unit_test() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        with pytest.raises(AssertionError, match="move it to tests/integration"):
            sock.listen()
