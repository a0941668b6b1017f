"""The fields of `POST /v1/video/analyze`, validated against the app's limits."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData, UploadFile

from deploy.api.response_format import schema_from_text
from deploy.api.sampling_options import audio_mode, sampling_options
from deploy.config.settings import AppArgs
from deploy.core.errors import InvalidRequest
from deploy.core.messages import AnalyzeRequest, GenerationParams
from deploy.core.numbers import INT64_MAX, INT64_MIN

FIELDS = (
    "file",
    "image",
    "url",
    "prompt",
    "num_frames",
    "fps",
    "start_s",
    "end_s",
    "strategy",
    "scene_threshold",
    "min_gap_s",
    "max_tokens",
    "temperature",
    "seed",
    "response_format",
    "audio",
)


def parse_analyze_form(form: FormData, args: AppArgs) -> AnalyzeRequest:
    unknown = sorted(set(form.keys()) - set(FIELDS))
    if unknown:
        raise InvalidRequest(
            f"unknown field(s) {', '.join(map(repr, unknown))}; accepted fields are "
            + ", ".join(FIELDS),
            param=unknown[0],
            code="unknown_field",
        )
    prompt = form_text(form, "prompt")
    if prompt is None or not prompt.strip():
        raise InvalidRequest(
            "'prompt' is required: the question to ask about the video",
            param="prompt",
            code="missing_prompt",
        )
    limit = args.generation.max_prompt_chars
    if len(prompt) > limit:
        raise InvalidRequest(
            f"'prompt' is {len(prompt)} characters; the limit is {limit}",
            param="prompt",
            code="prompt_too_long",
        )
    sampling = {
        "num_frames": form_number(form, "num_frames", int),
        "fps": form_number(form, "fps", float),
        "start_s": form_number(form, "start_s", float),
        "end_s": form_number(form, "end_s", float),
        "strategy": form_text(form, "strategy"),
        "scene_threshold": form_number(form, "scene_threshold", float),
        "min_gap_s": form_number(form, "min_gap_s", float),
    }
    generation = args.generation
    max_tokens = form_number(form, "max_tokens", int, low=1, high=generation.max_tokens_limit)
    temperature = form_number(form, "temperature", float, low=0.0, high=2.0)
    seed = form_number(form, "seed", int, low=INT64_MIN, high=INT64_MAX)
    audio = audio_mode(form_text(form, "audio"), "audio")
    return AnalyzeRequest(
        prompt=prompt,
        sampling=sampling_options(sampling, args.extraction, param_prefix=""),
        audio=audio,
        params=GenerationParams(
            max_tokens=int(max_tokens or generation.default_max_tokens),
            temperature=temperature,
            seed=seed,
            json_schema=schema_from_text(
                form_text(form, "response_format"), args.http.max_json_depth
            ),
        ),
    )


def form_text(form: FormData, name: str) -> str | None:
    value = form.get(name)
    if value is None:
        return None
    if isinstance(value, UploadFile):
        raise InvalidRequest(f"'{name}' must be a text field, not a file", param=name)
    return value


def form_number(
    form: FormData,
    name: str,
    kind: type[int] | type[float],
    *,
    low: float | None = None,
    high: float | None = None,
) -> Any:
    """A text field as a number; `low`..`high` checked when given (the sampling options'
    bounds are checked by api/sampling_options.py instead)."""
    raw = form_text(form, name)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = kind(raw.strip())
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise InvalidRequest(
            f"'{name}' must be {noun}, got {raw[:32]!r}", param=name, code="invalid_value"
        ) from None
    if low is not None and high is not None and not low <= value <= high:  # nan fails too
        raise InvalidRequest(
            f"'{name}' must be at least {low} and at most {high}, got {raw.strip()[:32]}",
            param=name,
            code="out_of_range",
        )
    return value
