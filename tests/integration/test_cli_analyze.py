"""`vidserve analyze` run as a subprocess against the running test service: a file uploaded with
a progress bar and the answer streamed, a URL, `--json`, API keys, and the server's errors shown
as it sent them, with the exit codes scripts rely on."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from tests.integration.conftest import CONFIG_KEY, OLLAMA_ONLY_PREFIX, Media
from tests.support.ports import free_port

VIDSERVE = str(Path(sys.executable).parent / "vidserve")


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VIDSERVE, "analyze", *args], capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def clip(media: Media, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "clip.mp4"
    path.write_bytes(media.video)
    return path


def test_a_file_is_uploaded_with_progress_and_the_answer_streamed(
    serve_url: str, clip: Path
) -> None:
    run = analyze(
        str(clip), "--prompt", "What happens?", "--server", serve_url, "--max-tokens", "6"
    )
    assert run.returncode == 0, run.stderr
    assert "upload" in run.stderr  # tqdm's bar, on stderr
    usage = re.search(r"\[(\d+) prompt \+ (\d+) answer tokens\]", run.stderr)
    assert usage is not None, run.stderr
    assert 1 <= int(usage.group(2)) <= 6
    assert run.stdout.endswith("\n")


def test_json_output_and_a_url(serve_url: str, media_server: HTTPServer) -> None:
    run = analyze(
        media_server.url_for("/media/clip"), "--prompt", "What happens?", "--server", serve_url,
        "--num-frames", "4", "--max-tokens", "4", "--json",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    body = json.loads(run.stdout)
    assert body["object"] == "chat.completion"
    assert body["vidserve"]["frames"]["count"] == 4
    assert body["vidserve"]["backend"] == "vllm"


def test_api_keys_are_sent_and_a_refusal_is_shown_as_the_server_said(
    serve_url: str, clip: Path
) -> None:
    server = f"{serve_url}{OLLAMA_ONLY_PREFIX}"
    refused = analyze(str(clip), "--prompt", "What happens?", "--server", server)
    assert refused.returncode == 1
    assert "vidserve: 401 missing_api_key:" in refused.stderr
    allowed = analyze(
        str(clip), "--prompt", "What?", "--server", server, "--api-key", CONFIG_KEY, "--json"
    )
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads(allowed.stdout)["vidserve"]["backend"] == "ollama"


def test_server_errors_and_local_mistakes_have_their_exit_codes(
    serve_url: str, clip: Path, tmp_path: Path
) -> None:
    invalid = analyze(str(clip), "--prompt", "What?", "--server", serve_url, "--num-frames", "0")
    assert invalid.returncode == 1
    assert re.search(r"vidserve: 4\d\d \w+: .*num_frames", invalid.stderr), invalid.stderr
    missing = analyze(str(tmp_path / "nope.mp4"), "--prompt", "What?", "--server", serve_url)
    assert missing.returncode == 2
    assert "no such file" in missing.stderr
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 10)
    not_video = analyze(str(text), "--prompt", "What?", "--server", serve_url)
    assert not_video.returncode == 2
    assert "is not a video or an image" in not_video.stderr
    down = analyze(str(clip), "--prompt", "What?", "--server", f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 3
    assert "cannot reach" in down.stderr
