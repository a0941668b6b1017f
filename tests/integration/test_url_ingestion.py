"""Videos by URL on the real app: the allowlisted test server, local files, and SSRF attempts.

Every refused URL must come back as a 4xx and leave `internal_server` (a private service on
loopback) untouched: nothing fetched, not even a connection that sends a request.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from openai import BadRequestError, OpenAI
from pytest_httpserver import HTTPServer

from tests.integration.conftest import VIDEO_FPS, VIDEO_FRAMES, Media

ANALYZE = "/v1/video/analyze"


def _analyze(client: httpx.Client, url: str, **data: str) -> httpx.Response:
    return client.post(ANALYZE, files={"url": (None, url)}, data={"prompt": "What?", **data})


def _error(response: httpx.Response, status: int) -> dict[str, str]:
    assert response.status_code == status, response.text
    error: dict[str, str] = response.json()["error"]
    return error


@pytest.fixture
def internal(internal_server: HTTPServer) -> Iterator[HTTPServer]:
    internal_server.clear_log()
    yield internal_server
    assert internal_server.log == [], "a refused URL reached the private service"


def test_a_video_by_url_is_downloaded_and_answered(
    client: httpx.Client, media_server: HTTPServer
) -> None:
    response = _analyze(client, media_server.url_for("/media/clip"), num_frames="4")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["frames"]["count"] == 4
    assert body["frames"]["timestamps"][-1] == pytest.approx((VIDEO_FRAMES - 1) / VIDEO_FPS)
    assert body["timings"]["download_s"] > 0


def test_redirects_within_the_allowlist_are_followed_and_windows_apply(
    client: httpx.Client, media_server: HTTPServer
) -> None:
    response = _analyze(
        client,
        media_server.url_for("/media/redirect-to-clip"),
        num_frames="3",
        start_s="1",
        end_s="2",
    )
    assert response.status_code == 200, response.text
    first, middle, last = response.json()["frames"]["timestamps"]
    # The window's ends exactly; the middle frame within extraction.uniform_slack_s (0.5 s) of
    # 1.5 s, moved nearer after the keyframe at 1.0 s when that decodes less.
    assert (first, last) == (1.0, 2.0)
    assert 1.0 < middle < 2.0
    assert abs(middle - 1.5) <= 0.5


def test_an_image_by_url_is_told_by_its_bytes(
    client: httpx.Client, media_server: HTTPServer
) -> None:
    response = _analyze(client, media_server.url_for("/media/picture"))
    assert response.status_code == 200, response.text
    assert response.json()["frames"]["count"] == 1


def test_a_file_in_the_shared_directory_is_read(client: httpx.Client, media: Media) -> None:
    response = _analyze(client, (media.local_dir / "clip.mp4").as_uri(), num_frames="2")
    assert response.status_code == 200, response.text
    assert response.json()["frames"]["count"] == 2


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/media/notes.mp4", 422, "unsupported_media"),
        ("/media/big.mp4", 413, "payload_too_large"),
        ("/media/slow.mp4", 422, "url_timeout"),
        ("/media/no-such-file", 422, "url_fetch_failed"),
    ],
    ids=["text-named-mp4", "over-the-size-cap", "slower-than-the-time-cap", "http-error"],
)
def test_downloads_that_cannot_be_used_are_clear_errors(
    client: httpx.Client, media_server: HTTPServer, path: str, status: int, code: str
) -> None:
    error = _error(_analyze(client, media_server.url_for(path)), status)
    assert error["code"] == code
    assert error["param"] == "url"


def _ssrf_urls(internal: int, media: int, local_dir: str) -> dict[str, str]:
    return {
        "loopback": f"http://127.0.0.1:{internal}/secret",
        "localhost-resolves-to-loopback": f"http://localhost:{internal}/secret",
        "private-10": "http://10.0.0.1/secret",
        "cloud-metadata": "http://169.254.169.254/latest/meta-data/",
        "ipv6-loopback": f"http://[::1]:{internal}/secret",
        "ipv4-mapped-ipv6-loopback": f"http://[::ffff:127.0.0.1]:{internal}/secret",
        "decimal-loopback": f"http://2130706433:{internal}/secret",
        "octal-loopback": f"http://0177.0.0.1:{internal}/secret",
        "redirect-to-private": f"http://127.0.0.1:{media}/media/redirect-to-internal",
        "file-outside-the-directory": "file:///etc/passwd",
        "path-escaping-the-directory": f"file://{local_dir}/../../../etc/passwd",
        "gopher": f"gopher://127.0.0.1:{internal}/_secret",
        "unspecified": f"http://0.0.0.0:{internal}/secret",
    }


SSRF_CASES = list(_ssrf_urls(1, 2, "/d"))


@pytest.mark.parametrize("case", SSRF_CASES)
def test_ssrf_attempts_are_refused_by_analyze(
    client: httpx.Client,
    internal: HTTPServer,
    media_server: HTTPServer,
    media: Media,
    case: str,
) -> None:
    url = _ssrf_urls(internal.port, media_server.port, str(media.local_dir))[case]
    response = _analyze(client, url)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]["code"] in {"url_not_allowed", "invalid_url"}


@pytest.mark.parametrize("case", ["loopback", "cloud-metadata", "redirect-to-private"])
def test_ssrf_attempts_are_refused_in_chat(
    serve_url: str,
    internal: HTTPServer,
    media_server: HTTPServer,
    media: Media,
    case: str,
) -> None:
    url = _ssrf_urls(internal.port, media_server.port, str(media.local_dir))[case]
    client = OpenAI(base_url=f"{serve_url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(BadRequestError) as raised:
        client.chat.completions.create(
            model="tiny-qwen2.5-vl",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "video_url", "video_url": {"url": url}},  # type: ignore[misc,list-item]
                        {"type": "text", "text": "What?"},
                    ],
                }
            ],
        )
    assert raised.value.status_code == 400
    assert raised.value.code == "url_not_allowed"
    assert raised.value.param == "messages[0].content[0].video_url.url"
