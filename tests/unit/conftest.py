"""Fixtures shared by the unit tests."""

from __future__ import annotations

import pytest

from deploy.video import av_read


@pytest.fixture(params=["pyav", "opencv"])
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with each frame reader: PyAV where it reads the stream (av_read), and OpenCV
    alone (as without PyAV installed)."""
    if request.param == "opencv":
        monkeypatch.setattr(av_read, "av", None)
    return str(request.param)
