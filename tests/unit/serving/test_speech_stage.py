"""A question's speech track (serving/speech_stage.py) with the extractor and the Transcriber
answering from scripts: what `auto`, `on` and `off` do when there is speech, no audio track, an
image, a URL, or a Transcriber that is down; and the prompt the transcript makes."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from deploy.config.speech_settings import SpeechSettings
from deploy.core.errors import InvalidRequest, ServiceUnavailable
from deploy.core.messages import MediaKind, SamplingOptions
from deploy.core.speech import (
    AUDIO_NOT_KEPT,
    AudioClip,
    AudioMode,
    Heard,
    SpeechSegment,
    Transcript,
)
from deploy.serving.affinity_router import url_key
from deploy.serving.pipeline import MediaSource
from deploy.serving.speech_stage import SpeechStage
from tests.support.handles import AnsweringHandle, Response

CLIP = AudioClip(np.zeros(16_000, np.float32), 0.0, 1.0, 1.0)
SAID = Transcript((SpeechSegment(0.2, 0.9, "refuel the truck"),), "en", "whisper-tiny.en", 1.0, 0.7)
VIDEO = MediaSource(param="file", kind=MediaKind.VIDEO, data=b"video bytes", digest="d1")


def _stage(clip: AudioClip | None = CLIP, transcript: Any = SAID) -> SpeechStage:
    async def audio() -> AudioClip | None:
        return clip

    async def transcribe() -> Transcript:
        if isinstance(transcript, Exception):
            raise transcript
        return transcript  # type: ignore[no-any-return]

    handles: Any = (AnsweringHandle(audio), AnsweringHandle(transcribe))
    return SpeechStage(*handles, SpeechSettings())


def _hear(stage: SpeechStage, source: MediaSource, mode: AudioMode) -> Heard:
    return asyncio.run(stage.hear(source, SamplingOptions(), mode))


def test_auto_hears_the_speech_and_puts_it_before_the_question() -> None:
    heard = _hear(_stage(), VIDEO, AudioMode.AUTO)
    assert heard.transcript == SAID
    assert heard.note is None
    assert heard.prompt("What is said?", 1000) == (
        "Speech in the video, with its times:\n[00:00-00:00] refuel the truck\n\nWhat is said?"
    )


def test_off_and_images_hear_nothing_without_a_note() -> None:
    assert _hear(_stage(), VIDEO, AudioMode.OFF) == Heard()
    image = MediaSource(param="image", kind=MediaKind.IMAGE, data=b"png")
    assert _hear(_stage(), image, AudioMode.AUTO) == Heard()


def test_what_cannot_be_heard_is_a_note_with_auto_and_a_400_with_on() -> None:
    heard = _hear(_stage(clip=None), VIDEO, AudioMode.AUTO)
    assert heard.transcript is None
    assert heard.note == "the video has no audio track"
    with pytest.raises(InvalidRequest) as refused:
        _hear(_stage(clip=None), VIDEO, AudioMode.ON)
    assert refused.value.code == "no_audio"


class _Recording:
    """The extractor's handle, recording which method each call took and its affinity key."""

    def __init__(self, answers: dict[str, object] | None = None) -> None:
        self.calls: list[tuple[str, str, tuple[object, ...]]] = []
        self._key = ""
        self._answers = answers or {}

    def options(self, multiplexed_model_id: str = "", **_: object) -> _Recording:
        routed = _Recording(self._answers)
        routed.calls, routed._key = self.calls, multiplexed_model_id
        return routed

    def __getattr__(self, method: str) -> Any:
        recording = self

        class _Method:
            def remote(self, *args: object) -> Response:
                recording.calls.append((method, recording._key, args))

                async def clip() -> object:
                    return recording._answers.get(method, CLIP)

                return Response(clip())

        return _Method()


def test_a_video_sent_by_url_is_heard_where_its_frames_were_read() -> None:
    url = "https://example.com/v.mp4"
    extractor = _Recording()

    async def transcribe() -> Transcript:
        return SAID

    stage = SpeechStage(extractor, AnsweringHandle(transcribe), SpeechSettings())  # type: ignore[arg-type]
    heard = _hear(stage, MediaSource(param="url", url=url), AudioMode.ON)
    assert heard.transcript == SAID
    [(method, key, args)] = extractor.calls
    assert (method, key, args[0]) == ("extract_audio_url", url_key(url), url)


@pytest.mark.parametrize("kept", [True, False])
def test_an_uploads_audio_is_read_from_the_bytes_its_frames_replica_kept(kept: bool) -> None:
    """The upload's bytes are not sent twice: the replica that decoded its frames (same key)
    reads the audio from the bytes it kept; only when it no longer has them are they sent."""
    answers: dict[str, object] = {} if kept else {"extract_audio_kept": AUDIO_NOT_KEPT}
    extractor = _Recording(answers)

    async def transcribe() -> Transcript:
        return SAID

    stage = SpeechStage(extractor, AnsweringHandle(transcribe), SpeechSettings())  # type: ignore[arg-type]
    assert _hear(stage, VIDEO, AudioMode.ON).transcript == SAID
    methods = [(method, key, args[0]) for method, key, args in extractor.calls]
    expected = [("extract_audio_kept", "d1", "d1")]
    if not kept:
        expected.append(("extract_audio", "d1", b"video bytes"))
    assert methods == expected


def test_a_transcriber_that_is_down_is_a_note_with_auto_and_its_503_with_on() -> None:
    down = ServiceUnavailable("the speech model could not be loaded", code="asr_unavailable")
    heard = _hear(_stage(transcript=down), VIDEO, AudioMode.AUTO)
    assert heard.note == "the speech could not be heard: the speech model could not be loaded"
    with pytest.raises(ServiceUnavailable):
        _hear(_stage(transcript=down), VIDEO, AudioMode.ON)


def test_silence_is_a_note_and_a_long_transcript_is_cut_to_the_prompt_budget() -> None:
    quiet = Transcript((), "en", "whisper-tiny.en", 1.0, 0.0)
    assert _hear(_stage(transcript=quiet), VIDEO, AudioMode.AUTO).note == (
        "no speech was heard in the video"
    )
    many = Transcript(
        tuple(SpeechSegment(i, i + 0.5, f"line {i}") for i in range(100)), "en", "m", 100.0, 50.0
    )
    prompt = Heard(many).prompt("Q?", 200)
    assert "(the first" in prompt
    assert "of 100 lines)" in prompt
    assert prompt.endswith("\nQ?")
