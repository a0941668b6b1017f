"""A stream's source: the URL checked (scheme, SSRF guard), then its decoded frames, in real
time, in the decoder's thread.

- rtsp:// rtsps:// rtmp:// rtmps://: FFmpeg (PyAV) connects to the address the guard checked
  (the host in the URL replaced by it: DNS cannot answer differently later). RTSP redirects are
  followed by FFmpeg itself and not re-checked: trust only RTSP servers you run (docs/streams.md).
- http(s)://...m3u8 (HLS): the playlist and every segment are fetched by vidserve's own guarded
  fetcher (jobs' URL rules: allow-lists, size and time caps, no redirect to a private address),
  never by FFmpeg, whose HLS reader would follow a playlist anywhere; each segment is decoded
  from memory. A live playlist starts at its newest segment; one with #EXT-X-ENDLIST is played
  through at its own pace.
- file://: a video inside url_fetch.local_dir played at its own speed (tests, demos).

`SourceLost` is a source that may come back (reconnect with backoff); `SourceRefused` one that
never will (the stream fails, saying why).
"""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import av
import m3u8

from deploy.config.settings import StreamsSettings
from deploy.core.errors import VidserveError
from deploy.core.speech import SAMPLE_RATE
from deploy.serving.fetch import UrlFetcher, UrlNotAllowed

DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "rtmp": 1935, "rtmps": 443}


class SourceLost(Exception):
    """The source went away or sent nothing for too long: reconnect."""


class SourceRefused(Exception):
    """The source can never be read (scheme, address, not a video): fail the stream."""

    def __init__(self, message: str, code: str = "stream_source_refused") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Opened:
    """What the decoder opens: `target` (a URL with a checked address, or a local path)."""

    kind: str  # "ffmpeg" | "hls" | "file"
    target: str


def check_scheme(url: str, settings: StreamsSettings) -> str:
    """The URL's scheme when streams.schemes allows it; else SourceRefused saying which do."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in settings.schemes:
        raise SourceRefused(
            f"a stream URL must start with one of {', '.join(s + '://' for s in settings.schemes)}"
            f" (streams.schemes), not {scheme + '://' if scheme else 'no scheme'}",
            code="url_not_allowed",
        )
    if scheme in ("http", "https") and not urlsplit(url).path.lower().endswith(".m3u8"):
        raise SourceRefused(
            "an http(s) stream is an HLS playlist: its path ends in .m3u8", code="invalid_url"
        )
    return scheme


async def resolve(url: str, settings: StreamsSettings, fetcher: UrlFetcher) -> Opened:
    """Check `url` (raises SourceRefused, or the guard's UrlNotAllowed) and say what to open."""
    scheme = check_scheme(url, settings)
    if scheme == "file":
        return Opened("file", str(fetcher.local_path(url)))
    if scheme in ("http", "https"):
        await fetcher.target(url)  # refused now rather than at the first poll
        return Opened("hls", url)
    parts = urlsplit(url)
    if not parts.hostname:
        raise SourceRefused(f"{url!r} has no host", code="invalid_url")
    port = parts.port or DEFAULT_PORTS[scheme]
    address = await fetcher.checked_address(parts.hostname, port)
    host = f"[{address}]" if ":" in address else address
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo + '@' if userinfo else ''}{host}:{port}"
    return Opened("ffmpeg", urlunsplit((scheme, netloc, parts.path, parts.query, "")))


def frames(
    opened: Opened,
    settings: StreamsSettings,
    fetcher: UrlFetcher,
    stop: threading.Event,
    *,
    audio: bool = False,
) -> Iterator[Any]:
    """The source's decoded video frames (av.VideoFrame) as they come, and with `audio` its
    sound as 16 kHz mono float32 arrays between them, until `stop` is set; SourceLost when it
    ends or stalls."""
    if opened.kind == "hls":
        yield from _hls_frames(opened.target, fetcher, settings, stop, audio=audio)
        return
    options: dict[str, str] = {}
    if opened.target.startswith("rtsp"):
        options["rtsp_transport"] = settings.rtsp_transport
    try:
        container = av.open(
            opened.target,
            mode="r",
            options=options,
            timeout=(settings.open_timeout_s, settings.stall_s),
        )
    except av.FFmpegError as exc:
        raise SourceLost(f"cannot open the source: {_said(exc, settings)}") from exc
    with container:
        pacer = _Pacer() if opened.kind == "file" else None
        try:
            for item, t in _decoded(container, audio, stop):
                if pacer is not None and t is not None:
                    pacer.wait(t, stop)
                yield item
        except av.FFmpegError as exc:
            raise SourceLost(f"the source broke off: {_said(exc, settings)}") from exc
    if not stop.is_set():
        raise SourceLost("the source ended")


def _decoded(
    container: Any, audio: bool, stop: threading.Event
) -> Iterator[tuple[Any, float | None]]:
    """(a video frame, its time) and, with `audio` and an audio track, (16 kHz mono samples,
    None), in the order the container has them."""
    if not container.streams.video:
        raise SourceRefused("the source has no video stream", code="not_a_video")
    video = container.streams.video[0]
    video.thread_type = "AUTO"
    sound = container.streams.audio[0] if audio and container.streams.audio else None
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    for packet in container.demux(*(s for s in (video, sound) if s is not None)):
        if stop.is_set():
            return
        for frame in packet.decode():
            if packet.stream is video:
                yield frame, float(frame.time) if frame.time is not None else None
            else:
                for out in resampler.resample(frame):
                    yield out.to_ndarray().reshape(-1), None


def _said(exc: Exception, settings: StreamsSettings) -> str:
    """FFmpeg's error, with its interrupt (PyAV's timeout) said as what it means."""
    if "Immediate exit requested" in str(exc):
        return (
            f"nothing came for {settings.stall_s:g}s (streams.stall_s; opening: "
            f"streams.open_timeout_s {settings.open_timeout_s:g}s)"
        )
    return str(exc)


class _Pacer:
    """Hold frames back to their own time (a file, or HLS segments that arrive at once)."""

    def __init__(self) -> None:
        self._start: tuple[float, float] | None = None

    def wait(self, media_s: float, stop: threading.Event) -> None:
        now = time.monotonic()
        if self._start is None or media_s < self._start[1]:
            self._start = (now, media_s)
            return
        ahead = (media_s - self._start[1]) - (now - self._start[0])
        if ahead > 0:
            stop.wait(ahead)


def _fetch(fetcher: UrlFetcher, url: str) -> bytes:
    try:
        return asyncio.run(fetcher.fetch(url))
    except UrlNotAllowed as exc:  # a refused segment is as final as a refused playlist
        raise SourceRefused(str(exc), code="url_not_allowed") from exc
    except VidserveError as exc:  # unreachable, too large, too slow: maybe not next time
        raise SourceLost(f"fetching {url}: {exc}") from exc


def _segment_frames(
    data: bytes, stop: threading.Event, audio: bool
) -> Iterator[tuple[Any, float | None]]:
    """A segment's frames with their seconds from its first frame (audio: None)."""
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except av.FFmpegError as exc:
        raise SourceLost(f"an HLS segment is not a video: {exc}") from exc
    with container:
        first: float | None = None
        try:
            for item, t in _decoded(container, audio, stop):
                if t is None:
                    yield item, None
                    continue
                first = t if first is None else first
                yield item, t - first
        except av.FFmpegError as exc:
            raise SourceLost(f"an HLS segment broke off: {exc}") from exc


def _media_playlist(url: str, fetcher: UrlFetcher) -> tuple[str, Any]:
    """(its URL, the media playlist) at `url`: a master playlist's first variant."""
    for _ in range(3):
        playlist = m3u8.loads(_fetch(fetcher, url).decode("utf-8", "replace"), uri=url)
        if not playlist.is_variant:
            return url, playlist
        if not playlist.playlists:
            raise SourceRefused("the HLS master playlist lists no stream", code="not_a_video")
        url = playlist.playlists[0].absolute_uri
    raise SourceRefused("HLS master playlists nest too deep", code="not_a_video")


def _hls_frames(
    url: str,
    fetcher: UrlFetcher,
    settings: StreamsSettings,
    stop: threading.Event,
    *,
    audio: bool,
) -> Iterator[Any]:
    seen = -1  # the last media sequence number decoded
    pacer = _Pacer()
    offset = 0.0  # media seconds of the segments before this one
    quiet_since = time.monotonic()
    while not stop.is_set():
        url, playlist = _media_playlist(url, fetcher)
        segments = list(enumerate(playlist.segments, start=playlist.media_sequence or 0))
        if seen < 0 and not playlist.is_endlist and segments:
            seen = segments[-1][0] - 1  # live: from the newest segment on
        for number, segment in (s for s in segments if s[0] > seen):
            for item, t in _segment_frames(_fetch(fetcher, segment.absolute_uri), stop, audio):
                if t is not None:
                    pacer.wait(offset + t, stop)
                yield item
            if stop.is_set():
                return
            offset += float(segment.duration or 0)
            seen, quiet_since = number, time.monotonic()
        if playlist.is_endlist and (not segments or seen >= segments[-1][0]):
            raise SourceLost("the HLS playlist ended")
        target = float(playlist.target_duration or 2)
        if time.monotonic() - quiet_since > max(settings.open_timeout_s, 3 * target):
            raise SourceLost("the HLS playlist has had no new segment for too long")
        stop.wait(max(0.2, target / 2))
