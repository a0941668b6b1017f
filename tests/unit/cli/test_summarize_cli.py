"""`vidserve summarize` without a server: what it says and its exit codes."""

from __future__ import annotations

import io
from pathlib import Path

from deploy.cli.analyze import EXIT_INPUT, EXIT_UNREACHABLE
from deploy.cli.summarize import Job, render, run
from tests.support.ports import free_port


def test_a_missing_file_is_exit_2(tmp_path: Path) -> None:
    err = io.StringIO()
    server = f"http://127.0.0.1:{free_port()}"
    assert run(Job(server, str(tmp_path / "none.mp4")), io.StringIO(), err) == EXIT_INPUT
    assert "no such file" in err.getvalue()


def test_an_unreachable_server_is_exit_3_saying_how_to_start_it(tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    video.write_bytes(b"\0\0\0\x18ftypmp42" + b"\0" * 100)
    err = io.StringIO()
    assert run(Job(f"http://127.0.0.1:{free_port()}", str(video)), io.StringIO(), err) == (
        EXIT_UNREACHABLE
    )
    assert "make run" in err.getvalue()


def test_chapters_and_failed_chunks_are_printed_with_times() -> None:
    out = io.StringIO()
    render(
        {
            "result": {
                "chapters": [
                    {"start_s": 0, "end_s": 95, "title": "Intro", "summary": "A welcome."}
                ],
                "summary": "All of it.",
                "failed_chunks": [
                    {"index": 3, "start_s": 90, "error": {"message": "corrupt stretch"}}
                ],
            }
        },
        out,
    )
    assert out.getvalue().splitlines() == [
        "[00:00:00-00:01:35] Intro",
        "    A welcome.",
        "",
        "All of it.",
        "(chunk 3 at 00:01:30 failed: corrupt stretch)",
    ]
