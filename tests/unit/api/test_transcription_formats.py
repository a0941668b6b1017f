"""The transcription API's answer shapes (api/transcription.py): SRT and WebVTT cue times,
text, json and verbose_json, from a known transcript."""

from __future__ import annotations

import json

from deploy.api.transcription import srt, transcription_response, vtt
from deploy.core.speech import SpeechSegment, Transcript

TRANSCRIPT = Transcript(
    segments=(
        SpeechSegment(0.66, 3.98, "The quick brown fox."),
        SpeechSegment(3725.5, 3727.004, "An hour later."),
    ),
    language="en",
    model="whisper-tiny.en",
    duration_s=3730.0,
    speech_s=6.1,
)


def test_srt_numbers_its_cues_with_comma_milliseconds() -> None:
    assert srt(TRANSCRIPT) == (
        "1\n00:00:00,660 --> 00:00:03,980\nThe quick brown fox.\n\n"
        "2\n01:02:05,500 --> 01:02:07,004\nAn hour later.\n"
    )


def test_vtt_has_its_header_and_dot_milliseconds() -> None:
    assert vtt(TRANSCRIPT) == (
        "WEBVTT\n\n00:00:00.660 --> 00:00:03.980\nThe quick brown fox.\n\n"
        "01:02:05.500 --> 01:02:07.004\nAn hour later.\n"
    )


def test_the_json_shapes() -> None:
    plain = json.loads(transcription_response(TRANSCRIPT, "json", {"k": 1}).body)
    assert plain == {"text": "The quick brown fox. An hour later.", "vidserve": {"k": 1}}
    verbose = json.loads(transcription_response(TRANSCRIPT, "verbose_json", {}).body)
    assert verbose["duration"] == 3730.0
    assert verbose["segments"][1] == {
        "id": 1, "start": 3725.5, "end": 3727.004, "text": "An hour later."
    }  # fmt: skip
    text = transcription_response(TRANSCRIPT, "text", {})
    assert text.body == b"The quick brown fox. An hour later.\n"


def test_prompt_lines_carry_clock_times() -> None:
    assert TRANSCRIPT.lines() == [
        "[00:00-00:03] The quick brown fox.",
        "[1:02:05-1:02:07] An hour later.",
    ]
