"""The one check of a request's sampling options, for both APIs (the analyze form's fields and
the chat API's `video_options`): each option's own bounds (`SamplingOptions`' fields), the app's
limits (`extraction.max_num_frames`, `extraction.max_fps`), then the options together."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from deploy.config.settings import ExtractionSettings
from deploy.core.errors import InvalidRequest
from deploy.core.messages import SamplingOptions, Strategy
from deploy.core.speech import AudioMode

OPTIONS = tuple(SamplingOptions.model_fields)
_OUT_OF_RANGE = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def sampling_options(
    values: dict[str, Any], extraction: ExtractionSettings, *, param_prefix: str
) -> SamplingOptions:
    """`values` by option name (None: not given) -> the options, or a 400 naming the option
    as the client wrote it (`param_prefix` + name)."""
    given = {name: value for name, value in values.items() if value is not None}
    try:
        options = SamplingOptions.model_validate(given)
    except ValidationError as exc:
        raise _invalid(exc, param_prefix) from None
    for name, limit, setting in (
        ("num_frames", extraction.max_num_frames, "extraction.max_num_frames"),
        ("fps", extraction.max_fps, "extraction.max_fps"),
    ):
        value = getattr(options, name)
        if value is not None and value > limit:
            raise InvalidRequest(
                f"'{param_prefix}{name}' must be at most {limit:g} ({setting}), got {value:g}",
                param=f"{param_prefix}{name}",
                code="out_of_range",
            )
    start_s, end_s = options.start_s, options.end_s
    if start_s is not None and end_s is not None and end_s <= start_s:
        raise InvalidRequest(
            f"'{param_prefix}end_s' ({end_s:g}) must be after '{param_prefix}start_s' "
            f"({start_s:g})",
            param=f"{param_prefix}end_s",
            code="out_of_range",
        )
    if options.strategy is Strategy.FPS and options.fps is None:
        raise InvalidRequest(
            "the fps strategy needs 'fps' (frames per second to sample)",
            param=f"{param_prefix}fps",
            code="invalid_value",
        )
    return options


def _invalid(exc: ValidationError, prefix: str) -> InvalidRequest:
    error = exc.errors()[0]
    name = str(error["loc"][0]) if error["loc"] else ""
    param = f"{prefix}{name}"
    if error["type"] == "extra_forbidden":
        return InvalidRequest(
            f"unknown option '{param}'; the sampling options are {', '.join(OPTIONS)}",
            param=param,
            code="unknown_parameter",
        )
    if name == "strategy":
        return InvalidRequest(
            f"'{param}' must be one of {', '.join(Strategy)}, got {error['input']!r}",
            param=param,
            code="invalid_value",
        )
    code = "out_of_range" if error["type"] in _OUT_OF_RANGE else "invalid_value"
    message = error["msg"].removeprefix("Input ").removeprefix("Value error, ")
    return InvalidRequest(f"'{param}' {message}, got {error['input']!r}", param=param, code=code)


def audio_mode(value: Any, param: str) -> AudioMode:
    """The `audio` option (auto when not given), or a 400 naming it."""
    if value is None or value == "":
        return AudioMode.AUTO
    try:
        return AudioMode(str(value).strip().lower())
    except ValueError:
        raise InvalidRequest(
            f"'{param}' must be one of {', '.join(AudioMode)}, got {str(value)[:32]!r}",
            param=param,
            code="invalid_value",
        ) from None
