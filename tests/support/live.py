"""Live sources on loopback for the stream tests and bench/streams.py: a real RTSP server
(Debian's rtsp-server-perl, RTSP::Server, installed by scripts/setup_env.py) that ffmpeg
publishes into, and HLS written by ffmpeg and served over loopback HTTP. Each can be cut and
brought back, as a camera that drops off the network does."""

from __future__ import annotations

import functools
import http.server
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

from tests.support.ports import free_port
from tests.support.videos import ffmpeg_exe

RTSP_SERVER = "rtsp-server-perl"


def camera_clip(
    path: Path, seconds: float = 20.0, size: str = "640x360", fps: int = 30, bitrate: str = "1M"
) -> Path:
    """A moving test pattern, H.264 with a keyframe a second (what cameras send)."""
    if not path.exists():
        subprocess.run(
            [
                ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
                "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}", "-t", str(seconds),
                "-c:v", "libx264", "-preset", "veryfast", "-g", str(fps), "-b:v", bitrate,
                "-maxrate", bitrate, "-bufsize", bitrate, "-pix_fmt", "yuv420p", str(path),
            ],
            check=True,
        )  # fmt: skip
    return path


def _wait_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


class RtspServer:
    """RTSP::Server on loopback: publishers ANNOUNCE on `source_port`, players on `port`. RTP
    goes over UDP (it has no interleaved TCP): streams.rtsp_transport udp."""

    def __init__(self, port: int | None = None) -> None:
        if shutil.which(RTSP_SERVER) is None:
            raise RuntimeError(
                f"{RTSP_SERVER} is not installed: `apt-get install rtsp-server-perl` "
                "(scripts/setup_env.py --dev installs it)"
            )
        self.port = port or free_port()
        self.source_port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> RtspServer:
        rtp = 30000 + (self.port % 2000) * 10  # its RTP ports, away from other tests'
        self._process = subprocess.Popen(
            [
                RTSP_SERVER, "--clientport", str(self.port), "--serverport", str(self.source_port),
                "--rtp_start_port", str(rtp), "--loglevel", "1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait_port(self.port)
        _wait_port(self.source_port)
        return self

    def url(self, name: str) -> str:
        return f"rtsp://127.0.0.1:{self.port}/{name}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def publisher(self, clip: Path, name: str) -> Publisher:
        target = f"rtsp://127.0.0.1:{self.source_port}/{name}"
        return Publisher([*_looped(clip), "-c", "copy", "-f", "rtsp", target])

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)
            self._process = None


def _looped(clip: Path) -> list[str]:
    """ffmpeg reading `clip` at its own speed, over and over (a camera that never stops)."""
    return [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1",
            "-i", str(clip)]  # fmt: skip


class Publisher:
    """An ffmpeg process sending a clip, in real time, until stopped; `stop` then `start` is a
    source that drops and comes back."""

    def __init__(self, command: list[str]) -> None:
        self._command = command
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> Publisher:
        self._process = subprocess.Popen(
            self._command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(1.0)  # announced before a player asks for it
        return self

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def stop(self) -> None:
        """As ffmpeg ends on SIGTERM: it tears its session down (RTSP::Server refuses a new
        ANNOUNCE on a path whose publisher vanished without one)."""
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
            self._process = None


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return


class HlsSource:
    """ffmpeg writing a live HLS playlist (1 s segments, the last 6 kept) into `directory`,
    served by a loopback HTTP server at `url`."""

    def __init__(
        self, clip: Path, directory: Path, port: int | None = None, *, reencode: bool = False
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/live.m3u8"
        handler = functools.partial(_Quiet, directory=str(directory))
        self._http = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        # Re-encoded (a keyframe a second, AAC sound) for a clip whose keyframes are far apart.
        codecs = ["-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-c:a", "aac"]
        self.publisher = Publisher(
            [
                *_looped(clip), *(codecs if reencode else ["-c", "copy"]), "-f", "hls",
                "-hls_time", "1",
                "-hls_list_size", "6", "-hls_flags", "delete_segments",
                str(directory / "live.m3u8"),
            ]
        )  # fmt: skip
        self._directory = directory

    def start(self) -> HlsSource:
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        self.publisher.start()
        deadline = time.monotonic() + 15
        while not (self._directory / "live.m3u8").exists():
            if time.monotonic() > deadline:
                raise TimeoutError("ffmpeg wrote no HLS playlist")
            time.sleep(0.2)
        return self

    def stop(self) -> None:
        self.publisher.stop()
        self._http.shutdown()
        self._http.server_close()
