"""Fetching media by URL: the SSRF guard, redirects, caps and local files.

A real HTTP server (pytest-httpserver on 127.0.0.1) serves the test video; it is trusted through
`allow_hosts` as `127.0.0.1:<its port>` only, so every other way of reaching this machine must
be refused, and the server's log shows that nothing else was fetched.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from deploy.config.settings import UrlFetchSettings
from deploy.core.errors import InvalidRequest, PayloadTooLarge, UnprocessableInput, VidserveError
from deploy.serving.fetch import UrlFetcher, UrlNotAllowed

VIDEO = b"\x00\x00\x00\x18ftypmp42" + os.urandom(4096)


@pytest.fixture(scope="module")
def server() -> Iterator[HTTPServer]:
    http = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    http.start()
    yield http
    http.stop()


@pytest.fixture(autouse=True)
def _fresh(server: HTTPServer) -> None:
    server.clear()


def _fetcher(server: HTTPServer, **settings: object) -> UrlFetcher:
    allowed = {"allow_hosts": (f"127.0.0.1:{server.port}",)}
    return UrlFetcher(UrlFetchSettings.model_validate({**allowed, **settings}))


def _fetch(fetcher: UrlFetcher, url: str) -> bytes:
    return asyncio.run(fetcher.fetch(url))


def test_an_allowed_host_is_fetched(server: HTTPServer) -> None:
    server.expect_request("/clip.mp4").respond_with_data(VIDEO, content_type="video/mp4")
    assert _fetch(_fetcher(server), server.url_for("/clip.mp4")) == VIDEO


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/clip.mp4",  # the trusted entry is 127.0.0.1:<port> only
        "http://localhost:{port}/clip.mp4",  # a name that resolves to loopback
        "http://10.0.0.1/clip.mp4",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:{port}/clip.mp4",
        "http://[::ffff:127.0.0.1]:{port}/clip.mp4",  # IPv4-mapped IPv6 loopback
        "http://2130706433:{port}/clip.mp4",  # 127.0.0.1 as one decimal number
        "http://0177.0.0.1:{port}/clip.mp4",  # octal
        "http://0.0.0.0:{port}/clip.mp4",
        "http://224.0.0.1/clip.mp4",
        "http://100.64.0.1/clip.mp4",  # carrier-grade NAT, not public
        "file:///etc/passwd",
        "gopher://127.0.0.1:{port}/_GET",
        "ftp://example.com/clip.mp4",
    ],
)
def test_ssrf_attempts_are_refused_and_nothing_is_fetched(server: HTTPServer, url: str) -> None:
    server.expect_request("/clip.mp4").respond_with_data(VIDEO)
    with pytest.raises(InvalidRequest) as info:
        _fetch(_fetcher(server), url.format(port=server.port))
    assert info.value.status_code == 400
    # Refused by the guard, or (octal) not even accepted as a URL by the HTTP client.
    assert info.value.code in {"url_not_allowed", "invalid_url"}
    assert server.log == []


def test_a_redirect_to_a_private_address_is_refused(server: HTTPServer) -> None:
    server.expect_request("/go").respond_with_data(
        "", status=302, headers={"Location": "http://10.0.0.1/clip.mp4"}
    )
    with pytest.raises(UrlNotAllowed, match=r"10\.0\.0\.1, a private address"):
        _fetch(_fetcher(server), server.url_for("/go"))
    assert len(server.log) == 1


def test_redirects_are_followed_up_to_the_cap(server: HTTPServer) -> None:
    for hop in range(3):
        server.expect_request(f"/r{hop}").respond_with_data(
            "", status=302, headers={"Location": f"/r{hop + 1}"}
        )
    server.expect_request("/r3").respond_with_data(VIDEO)
    assert _fetch(_fetcher(server, max_redirects=3), server.url_for("/r0")) == VIDEO
    with pytest.raises(UnprocessableInput, match="redirected more than 2 times"):
        _fetch(_fetcher(server, max_redirects=2), server.url_for("/r0"))


def test_a_trusted_network_may_be_private(server: HTTPServer) -> None:
    server.expect_request("/clip.mp4").respond_with_data(VIDEO)
    fetcher = UrlFetcher(UrlFetchSettings(allow_cidrs=("127.0.0.0/8",)))
    assert _fetch(fetcher, f"http://localhost:{server.port}/clip.mp4") == VIDEO


def test_an_oversize_download_stops_at_the_cap(server: HTTPServer) -> None:
    big = b"x" * 200_000
    server.expect_request("/declared").respond_with_data(big)

    def chunked(request: Request) -> Response:
        return Response(big[i : i + 10_000] for i in range(0, len(big), 10_000))

    server.expect_request("/chunked").respond_with_handler(chunked)
    fetcher = _fetcher(server, max_bytes=100_000)
    for path in ("/declared", "/chunked"):
        with pytest.raises(PayloadTooLarge, match="larger than 100000 bytes"):
            _fetch(fetcher, server.url_for(path))


def test_a_slow_server_hits_the_time_cap(server: HTTPServer) -> None:
    def slow(request: Request) -> Response:
        time.sleep(3)
        return Response(VIDEO)

    server.expect_request("/slow").respond_with_handler(slow)
    started = time.monotonic()
    with pytest.raises(UnprocessableInput, match=r"longer than 0\.5s") as info:
        _fetch(_fetcher(server, timeout_s=0.5), server.url_for("/slow"))
    assert info.value.code == "url_timeout"
    assert time.monotonic() - started < 3


def test_http_errors_and_unresolvable_hosts_are_clear(server: HTTPServer) -> None:
    server.expect_request("/missing").respond_with_data("no", status=404)
    with pytest.raises(UnprocessableInput, match="answered HTTP 404"):
        _fetch(_fetcher(server), server.url_for("/missing"))
    with pytest.raises(VidserveError, match="cannot be resolved"):
        _fetch(_fetcher(server), "http://no-such-host.invalid/clip.mp4")


def test_local_files_only_inside_the_configured_directory(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "clip.mp4").write_bytes(VIDEO)
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(b"secret")
    (shared / "link.mp4").symlink_to(secret)
    fetcher = UrlFetcher(UrlFetchSettings(local_dir=shared))
    assert _fetch(fetcher, f"file://{shared}/clip.mp4") == VIDEO
    for escape in (f"file://{shared}/../secret.mp4", f"file://{shared}/link.mp4"):
        with pytest.raises(UrlNotAllowed, match=r"inside url_fetch\.local_dir"):
            _fetch(fetcher, escape)
    with pytest.raises(UrlNotAllowed, match="file:// URLs are off"):
        _fetch(UrlFetcher(UrlFetchSettings()), f"file://{shared}/clip.mp4")
