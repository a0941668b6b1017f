"""Tell what a file is from its first bytes, never from its name."""

from __future__ import annotations

from dataclasses import dataclass

from deploy.core.messages import MediaKind


@dataclass(frozen=True)
class Sniffed:
    kind: MediaKind | None
    format: str


_IMAGE_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "png"),
    (b"BM", 0, "bmp"),
)

_VIDEO_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"ftyp", 4, "mp4"),  # MP4, MOV, 3GP, M4V: ISO base media, 'ftyp' box first
    (b"moov", 4, "mov"),
    (b"mdat", 4, "mov"),
    (b"wide", 4, "mov"),
    (b"\x1a\x45\xdf\xa3", 0, "matroska"),  # MKV, WebM
    (b"FLV", 0, "flv"),
    (b"OggS", 0, "ogg"),
    (b"\x00\x00\x01\xba", 0, "mpeg-ps"),
    (b"\x00\x00\x01\xb3", 0, "mpeg-video"),
)


def sniff(head: bytes) -> Sniffed:  # noqa: PLR0911 - one return per family of formats
    """Classify a file by its leading bytes (at least 16 are needed for most formats)."""
    for signature, offset, name in _VIDEO_SIGNATURES:
        if head[offset : offset + len(signature)] == signature:
            return Sniffed(MediaKind.VIDEO, name)
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return Sniffed(MediaKind.VIDEO, "avi")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return Sniffed(MediaKind.IMAGE, "webp")
    if len(head) >= 189 and head[0] == 0x47 and head[188] == 0x47:
        return Sniffed(MediaKind.VIDEO, "mpeg-ts")
    for signature, offset, name in _IMAGE_SIGNATURES:
        if head[offset : offset + len(signature)] == signature:
            return Sniffed(MediaKind.IMAGE, name)
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return Sniffed(None, "a GIF animation")
    return Sniffed(None, _describe_unknown(head))


def _describe_unknown(head: bytes) -> str:
    if not head:
        return "empty"
    sample = head[:512]
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError:
        return "unknown binary"
    return "text"
