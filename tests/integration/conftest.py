"""The real Serve app (CPU profile, the real vLLM engine on the tiny model), once per session,
with the Ollama stand-in (tests/support/ollama_stub.py) as its fallback.

Two applications run side by side in the one Serve instance:
  * `vidserve` at `/`: primary vLLM, fallback Ollama (the stand-in); open (no API keys);
    fetches URLs from `media_server` (allowlisted) and `file://` inside `media_dir`;
  * `vidserve-ollama` at `/ollama-only`: primary Ollama, no fallback, no vLLM deployment, two
    FrameExtractor replicas (cache affinity); API keys required (one in the config, one in a
    keys file). The `client` fixture sends one.
`internal_server` stands for a private service: nothing may ever reach it.
"""

from __future__ import annotations

import copy
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import httpx
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from deploy.cli import runner
from deploy.config.serve_config import Profile, load_config, merge, validate
from deploy.dev.tiny_model import ensure_tiny_model
from tests.support.live import RtspServer, camera_clip
from tests.support.ollama_stub import VISION, OllamaStub
from tests.support.ports import free_port
from tests.support.prometheus import Prometheus, run_prometheus
from tests.support.videos import encode_index, write_h264

# Small enough that the oversize-upload test sends little, large enough for every test video.
TEST_MAX_UPLOAD_BYTES = 4 * 1024 * 1024
START_TIMEOUT_S = 600.0
TEST_RAY_CPUS = 12
OLLAMA_ONLY_PREFIX = "/ollama-only"
OLLAMA_ONLY_MODEL = "qwen2.5vl:3b"
OLLAMA_ONLY_TIMEOUT_S = 3.0
# The fault tests wait for these: a short circuit-breaker cycle and bounded vLLM waits.
BREAKER = {"failure_threshold": 2, "open_s": 3, "probe_timeout_s": 3}
VLLM_TIMEOUT_S = 90.0
URL_FETCH_TIMEOUT_S = 3.0
# The ollama-only app's keys: one from its config, one from its keys file.
CONFIG_KEY = "vidserve-test-key-from-config"
FILE_KEY = "vidserve-test-key-from-the-file"
VIDEO_FRAMES, VIDEO_FPS = 40, 10.0
SCRAPE_INTERVAL_S = 2
# The ollama-only app's FrameExtractor replicas (the main app's autoscale from one).
AFFINITY_EXTRACTORS = 2
# Jobs: the tiny model writes until max_tokens; short captions and merges keep jobs quick.
JOB_TOKENS = {"caption_max_tokens": 32, "summary_max_tokens": 48, "lease_s": 6.0}
# Streams: short windows and leases (a killed decoder's streams resume within 5 + 0.5 s); the
# test RTSP server has no interleaved TCP.
STREAMS = {
    "schemes": ["rtsp", "rtmp", "http", "https", "file"],
    "rtsp_transport": "udp",
    "window_s": 2.0,
    "frames_per_window": 2,
    "lease_s": 5.0,
    "claim_interval_s": 0.5,
    "stall_s": 3.0,
    "caption_max_tokens": 8,
    "webhook_backoff_s": 0.5,
}


@dataclass(frozen=True)
class Media:
    """The test media, as bytes and where the app may fetch them."""

    video: bytes
    image: bytes
    local_dir: Path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = Path(os.environ.get("VIDSERVE_TEST_CACHE", Path.home() / ".cache" / "vidserve"))
    return ensure_tiny_model(cache / "tiny-qwen2.5-vl-test")


@pytest.fixture(scope="session")
def ollama_stub() -> Iterator[OllamaStub]:
    stub = OllamaStub({"qwen2.5vl:7b": VISION, OLLAMA_ONLY_MODEL: VISION})
    stub.start()
    yield stub
    stub.stop()


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    local_dir = tmp_path_factory.mktemp("shared-volume")
    # A keyframe every second: keyframe sampling has four to choose from.
    video = write_h264(local_dir / "clip.mp4", VIDEO_FRAMES, VIDEO_FPS, (320, 240), gop=10)
    image = cv2.imencode(".png", encode_index(5, 224, 224))[1].tobytes()
    return Media(video.read_bytes(), image, local_dir)


@dataclass(frozen=True)
class LivePorts:
    """Where the stream tests' sources listen (tests/support/live.py): allowlisted."""

    rtsp: int
    hls: int
    webhook: int

    @property
    def hosts(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in (self.rtsp, self.hls, self.webhook)]


@pytest.fixture(scope="session")
def live_ports() -> LivePorts:
    return LivePorts(free_port(), free_port(), free_port())


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A camera's picture: a moving test pattern, 10 s, 360p H.264 (streams loop it)."""
    return camera_clip(tmp_path_factory.mktemp("camera") / "camera.mp4", seconds=10)


@pytest.fixture(scope="session")
def rtsp(live_ports: LivePorts) -> Iterator[RtspServer]:
    """A real RTSP server on the allowlisted port; tests publish into it."""
    server = RtspServer(port=live_ports.rtsp).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def internal_server() -> Iterator[HTTPServer]:
    """A private service on loopback, not allowlisted: every SSRF test checks its log."""
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.expect_request("/secret").respond_with_data("the metadata token")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def media_server(media: Media, internal_server: HTTPServer) -> Iterator[HTTPServer]:
    """Trusted storage on the allowlist (`url_fetch.allow_hosts: [127.0.0.1:<port>]`)."""
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    # Served without a telling name or type: the kind must come from the bytes.
    server.expect_request("/media/clip").respond_with_data(media.video, content_type="text/plain")
    server.expect_request("/media/picture").respond_with_data(media.image)
    server.expect_request("/media/notes.mp4").respond_with_data(b"just some text\n" * 100)
    big = b"\0\0\0\x18ftypmp42" + b"\0" * (TEST_MAX_UPLOAD_BYTES + 1024)
    server.expect_request("/media/big.mp4").respond_with_data(big)
    server.expect_request("/media/slow.mp4").respond_with_handler(_slow)
    server.expect_request("/media/redirect-to-internal").respond_with_data(
        "", status=302, headers={"Location": internal_server.url_for("/secret")}
    )
    server.expect_request("/media/redirect-to-clip").respond_with_data(
        "", status=302, headers={"Location": "/media/clip"}
    )
    server.start()
    yield server
    server.stop()


def _slow(request: Request) -> Response:
    """Headers at once, then the body a little at a time for longer than the time cap."""

    def trickle() -> Iterator[bytes]:
        yield b"\0\0\0\x18ftypmp42"
        for _ in range(int(URL_FETCH_TIMEOUT_S * 4)):
            time.sleep(0.5)
            yield b"\0" * 1024

    return Response(trickle(), content_type="video/mp4")


def _test_config(
    tiny_model_dir: Path,
    port: int,
    ollama_url: str,
    media_port: int,
    local_dir: Path,
    keys_file: Path,
    data_dirs: tuple[Path, Path],
    live: LivePorts,
) -> dict[str, Any]:
    overlay = {
        "http_options": {"host": "127.0.0.1", "port": port},
        "applications": [
            {
                "name": "vidserve",
                "args": {
                    "backends": {"circuit_breaker": BREAKER},
                    "llm": {
                        "model": str(tiny_model_dir),
                        "model_id": "tiny-qwen2.5-vl",
                        "request_timeout_s": VLLM_TIMEOUT_S,
                    },
                    "ollama": {"host": ollama_url},
                    "extraction": {"max_upload_bytes": TEST_MAX_UPLOAD_BYTES},
                    "url_fetch": {
                        "allow_hosts": [f"127.0.0.1:{media_port}", *live.hosts],
                        # Nothing beyond loopback, whatever a test (or the fuzzer) sends.
                        "allowed_only": True,
                        "timeout_s": URL_FETCH_TIMEOUT_S,
                        "local_dir": str(local_dir),
                    },
                    # Each app its own jobs database; short answers from the tiny model.
                    "jobs": {"data_dir": str(data_dirs[0]), **JOB_TOKENS},
                    "streams": STREAMS,
                },
            }
        ],
    }
    config = load_config(profile=Profile.CPU, extra_overlays=(overlay,))
    ollama_only = copy.deepcopy(config["applications"][0])
    ollama_only.update(name="vidserve-ollama", route_prefix=OLLAMA_ONLY_PREFIX)
    ollama_only["args"] = merge(
        ollama_only["args"],
        {
            "backends": {"primary": "ollama", "fallback": "none"},
            "ollama": {"model": OLLAMA_ONLY_MODEL, "request_timeout_s": OLLAMA_ONLY_TIMEOUT_S},
            "auth": {"api_keys": [CONFIG_KEY], "api_keys_file": str(keys_file)},
            "jobs": {"data_dir": str(data_dirs[1]), **JOB_TOKENS},
            "speech": {"enabled": False},  # the main app's Transcriber is the one tested
            "search": {"semantic": False},  # and its Embedder
        },
    )
    dropped = {"VLLM", "Transcriber", "Embedder"}
    ollama_only["deployments"] = [d for d in ollama_only["deployments"] if d["name"] not in dropped]
    for deployment in ollama_only["deployments"]:
        if deployment["name"] == "FrameExtractor":  # cache affinity over two replicas
            deployment.pop("autoscaling_config", None)
            deployment["num_replicas"] = AFFINITY_EXTRACTORS
    config["applications"].append(ollama_only)
    validate(config)
    return config


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The monitoring tests run last: by then the session has sent traffic down every path
    (the fault tests' fallbacks included) for the dashboards to show."""
    items.sort(key=lambda item: item.nodeid.split("::")[0].endswith("test_monitoring.py"))


@pytest.fixture(scope="session")
def metrics_port() -> int:
    """Where the test Ray exports its Prometheus metrics."""
    return free_port()


@pytest.fixture(scope="session")
def prometheus(
    metrics_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus | None]:
    """A real Prometheus scraping the test app from before it starts to the session's end, so
    that the dashboards can be checked over everything the session did (None when Prometheus
    is not installed: the monitoring tests then fail saying how to install it)."""
    if shutil.which("prometheus") is None:
        yield None
        return
    workdir = tmp_path_factory.mktemp("prometheus")
    with run_prometheus(f"127.0.0.1:{metrics_port}", workdir, SCRAPE_INTERVAL_S) as running:
        yield running


@pytest.fixture(scope="session")
def serve_url(
    metrics_port: int,
    prometheus: Prometheus | None,
    tiny_model_dir: Path,
    ollama_stub: OllamaStub,
    media: Media,
    media_server: HTTPServer,
    live_ports: LivePorts,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    del prometheus  # requested only to be scraping before the app starts
    for name in (
        "VLLM_MODEL_PATH", "VIDSERVE_BACKEND", "VIDSERVE_FALLBACK", "OLLAMA_HOST",
        "VIDSERVE_API_KEYS", "VIDSERVE_API_KEYS_FILE",
    ):  # fmt: skip
        os.environ.pop(name, None)
    keys_file = tmp_path_factory.mktemp("secret") / "api-keys"
    keys_file.write_text(f"# mounted from a Secret\n{FILE_KEY}\n")
    port = free_port()
    data_dirs = (tmp_path_factory.mktemp("jobs-data"), tmp_path_factory.mktemp("jobs-data-2"))
    config = _test_config(
        tiny_model_dir,
        port,
        ollama_stub.url,
        media_server.port,
        media.local_dir,
        keys_file,
        data_dirs,
        live_ports,
    )
    _DEPLOYED["config"] = config
    # Logical CPUs for both apps, and the alert tests' third (test_stream_alerts.py).
    runner.start_local_ray(num_cpus=TEST_RAY_CPUS, metrics_port=metrics_port)
    try:
        runner.deploy(config)
        runner.wait_until_running(START_TIMEOUT_S, progress=print)
        runner.wait_until_running(START_TIMEOUT_S, progress=print, app="vidserve-ollama")
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url)
        yield url
    finally:
        runner.shutdown()


_DEPLOYED: dict[str, dict[str, Any]] = {}


@pytest.fixture(scope="session")
def deployed_config(serve_url: str) -> dict[str, Any]:
    """The Serve config the session deployed (a test that restarts an app deploys it again)."""
    return copy.deepcopy(_DEPLOYED["config"])


def _wait_ready(url: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url}/readyz never returned 200")


@pytest.fixture(scope="session")
def client(serve_url: str) -> Iterator[httpx.Client]:
    """Sends the ollama-only app's key (the main app has none and ignores it)."""
    headers = {"Authorization": f"Bearer {CONFIG_KEY}"}
    with httpx.Client(base_url=serve_url, timeout=120, headers=headers) as http:
        yield http


@pytest.fixture
def stub(ollama_stub: OllamaStub) -> Iterator[OllamaStub]:
    """The stand-in, reset before and after a test that changes its behaviour."""
    ollama_stub.reset()
    yield ollama_stub
    if not ollama_stub.server.is_running():
        ollama_stub.restart()
    ollama_stub.reset()
