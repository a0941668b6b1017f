"""The byte budget belongs to the routes that read a body, and no client takes more than its
share of it (issue 26): a GET declaring `Content-Length: 1073741824` and trickling its body
held the whole budget, and uploads from everyone else got 503 meanwhile.

Over real HTTP and raw sockets against the ingress's real Starlette app served by uvicorn
(the harness of test_guard.py).
"""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from tests.support.guarded_app import KEY_A, KEY_B, Server, app_args, chat, read_response, serve

GIB = 1024 * 1024 * 1024


def _trickle(
    port: int, method: str, path: str, length: int, key: str | None = None
) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    sock.sendall(
        f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{auth}"
        f"Content-Length: {length}\r\n\r\n{{".encode()
    )
    return sock


def test_a_get_with_a_body_is_refused_and_holds_no_budget() -> None:
    args = app_args(
        extraction={"max_upload_bytes": 256 * 1024}, http={"max_inflight_bytes": 5 * 1024 * 1024}
    )
    with serve(args) as server:
        server.backend.release.set()
        started = time.monotonic()
        sock = _trickle(server.port, "GET", "/v1/models", GIB)
        status, _, text = read_response(sock)
        sock.close()
        assert status == 400, text
        assert "body_not_allowed" in text
        assert time.monotonic() - started < 3  # at once, not after the body
        # Held open while it trickles, a GET body takes nothing from anyone else.
        holder = _trickle(server.port, "GET", "/healthz", 1536 * 1024)  # 4.5 of the 5 MiB
        try:
            response = httpx.post(
                f"{server.url}/v1/chat/completions",
                content=b'{"model": "x", "messages": [], "pad": "' + b"x" * 1_000_000 + b'"}',
                headers={"content-type": "application/json"},
            )
            assert response.status_code == 400, response.text  # read and parsed, not refused
            assert response.json()["error"]["code"] != "overloaded"
        finally:
            holder.close()


MIB = 1024 * 1024
# A 12 MiB replica budget of which one client may hold 4 MiB.
SHARED = {
    "extraction": {"max_upload_bytes": 256 * 1024},
    "http": {"max_inflight_bytes": 12 * MIB, "max_inflight_bytes_per_client": 4 * MIB},
}


def _second_body(server: Server, key: str) -> httpx.Response:
    """While a first body of 1.2 MiB (3.6 of the client's 4 MiB, counted as JSON) trickles in
    with key A, a second of 400 KiB (1.2 MiB counted) with `key`."""
    held = _trickle(server.port, "POST", "/v1/chat/completions", 1229 * 1024, key=KEY_A)
    try:
        time.sleep(0.2)
        return httpx.post(
            f"{server.url}/v1/chat/completions",
            content=b"x" * (400 * 1024),
            headers={"content-type": "application/json", "Authorization": f"Bearer {key}"},
        )
    finally:
        held.close()


def test_one_client_cannot_hold_more_than_its_share_of_the_budget() -> None:
    with serve(app_args(**SHARED), keys=[KEY_A, KEY_B]) as server:
        server.backend.release.set()
        held = _trickle(server.port, "POST", "/v1/chat/completions", 1229 * 1024, key=KEY_A)
        try:
            time.sleep(0.2)
            second = httpx.post(
                f"{server.url}/v1/chat/completions",
                content=b"x" * (400 * 1024),
                headers={"content-type": "application/json", "Authorization": f"Bearer {KEY_A}"},
            )
            assert second.status_code == 429, second.text
            error = second.json()["error"]
            assert error["code"] == "client_bytes_in_flight"
            assert "http.max_inflight_bytes_per_client" in error["message"]
            assert second.headers["retry-after"] == "2"
            # Key B still has its share.
            other = httpx.post(
                f"{server.url}/v1/chat/completions",
                json=chat() | {"user": "x" * (400 * 1024)},
                headers={"Authorization": f"Bearer {KEY_B}"},
            )
            assert other.status_code == 200, other.text
        finally:
            held.close()


def test_without_keys_a_made_up_token_does_not_buy_a_second_share() -> None:
    with serve(app_args(**SHARED)) as server:  # no keys: the client is its address
        server.backend.release.set()
        second = _second_body(server, KEY_B)
        assert second.status_code == 429, second.text


def test_a_body_declared_past_a_clients_share_is_the_routes_413_not_a_429() -> None:
    """The share holds one largest request: a body declared past it is past every route's size
    cap, so the route says 413 without reading it (found by the integration tests in CI)."""
    args = app_args(
        extraction={"max_upload_bytes": 256 * 1024}, http={"max_inflight_bytes": 12 * MIB}
    )
    with serve(args) as server:
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(
            b"POST /v1/video/analyze HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n"
            + f"Content-Length: {3 * MIB}\r\n\r\n".encode()
        )
        status, _, text = read_response(sock)
        sock.close()
        assert status == 413, text


def test_a_share_below_one_largest_request_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="cannot hold one largest request"):
        app_args(
            extraction={"max_upload_bytes": 256 * 1024}, http={"max_inflight_bytes_per_client": MIB}
        )
