"""A stream URL is checked before anything connects: its scheme, and the address it resolves
to (the SSRF guard of media URLs); FFmpeg is then given the checked address, not the name."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from deploy.config.settings import StreamsSettings, UrlFetchSettings
from deploy.serving.fetch import UrlFetcher, UrlNotAllowed
from deploy.streams import source

SETTINGS = StreamsSettings()


def _resolve(url: str, fetch: UrlFetchSettings | None = None, **streams: object) -> source.Opened:
    settings = StreamsSettings.model_validate(streams) if streams else SETTINGS
    return asyncio.run(source.resolve(url, settings, UrlFetcher(fetch or UrlFetchSettings())))


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://cam.example/live", "must start with one of rtsp://"),
        ("file:///tmp/clip.mp4", "not file://"),
        ("https://cdn.example/live/index.html", "ends in .m3u8"),
        ("cam.example:554/live", "must start with one of"),
    ],
)
def test_schemes_and_paths_are_checked(url: str, says: str) -> None:
    with pytest.raises(source.SourceRefused, match=says):
        _resolve(url)


@pytest.mark.parametrize(
    "url",
    [
        "rtsp://127.0.0.1:8554/cam",
        "rtmp://10.1.2.3/live/key",
        "rtsp://169.254.169.254/latest",
        "rtsp://localhost/cam",  # by name: resolved, then refused
        "http://127.0.0.1:8080/live.m3u8",
    ],
)
def test_private_addresses_are_refused(url: str) -> None:
    with pytest.raises(UrlNotAllowed, match="does not connect to such addresses"):
        _resolve(url)


def test_ffmpeg_gets_the_checked_address_with_the_credentials_and_port() -> None:
    trusted = UrlFetchSettings(allow_hosts=("localhost",))
    opened = _resolve("rtsp://viewer:pa%40ss@localhost/cam?channel=1", trusted)
    assert opened == source.Opened("ffmpeg", "rtsp://viewer:pa%40ss@127.0.0.1:554/cam?channel=1")
    assert _resolve("rtmp://localhost/live/key", trusted).target == (
        "rtmp://127.0.0.1:1935/live/key"
    )


def test_a_file_stream_stays_inside_the_local_dir(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\0")
    local = UrlFetchSettings(local_dir=tmp_path)
    schemes = {"schemes": ("file",)}
    assert _resolve(f"file://{clip}", local, **schemes) == source.Opened("file", str(clip))
    with pytest.raises(UrlNotAllowed, match=r"not inside url_fetch\.local_dir"):
        _resolve("file:///etc/passwd", local, **schemes)


def test_allowed_only_refuses_public_addresses_too() -> None:
    locked = UrlFetchSettings(allowed_only=True, allow_hosts=("127.0.0.1:8554",))
    with pytest.raises(UrlNotAllowed, match="allowed_only"):
        _resolve("rtsp://93.184.215.14/cam", locked)
    assert _resolve("rtsp://127.0.0.1:8554/cam", locked).target == "rtsp://127.0.0.1:8554/cam"
