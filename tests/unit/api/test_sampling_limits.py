"""Both APIs check sampling options with one rule (api/sampling_options.py): the same bad option
gets the same 400 from the analyze form and from the chat API's video_options."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.datastructures import FormData

from deploy.api.analyze_form import parse_analyze_form
from deploy.api.openai_protocol import parse_chat
from deploy.config.settings import AppArgs
from deploy.core.errors import InvalidRequest
from deploy.core.messages import SamplingOptions, Strategy

ARGS = AppArgs.model_validate({"extraction": {"max_num_frames": 32, "max_fps": 4.0}})


def _form_error(options: dict[str, Any]) -> InvalidRequest:
    fields = [("prompt", "What?"), *((k, str(v)) for k, v in options.items())]
    with pytest.raises(InvalidRequest) as info:
        parse_analyze_form(FormData(fields), ARGS)
    return info.value


def _chat_error(options: dict[str, Any]) -> InvalidRequest:
    body = {
        "model": ARGS.model_of(ARGS.backends.primary),
        "messages": [{"role": "user", "content": "x"}],
        "video_options": options,
    }
    with pytest.raises(InvalidRequest) as info:
        parse_chat(json.dumps(body).encode(), ARGS, [body["model"]])
    return info.value


@pytest.mark.parametrize(
    ("options", "code", "name", "says"),
    [
        ({"num_frames": 64}, "out_of_range", "num_frames",
         "at most 32 (extraction.max_num_frames)"),
        ({"num_frames": 0}, "out_of_range", "num_frames", "greater than or equal to 1"),
        ({"fps": 8}, "out_of_range", "fps", "at most 4 (extraction.max_fps)"),
        ({"fps": 0}, "out_of_range", "fps", "greater than 0"),
        ({"start_s": 90000}, "out_of_range", "start_s", "less than or equal to 86400"),
        ({"start_s": 9, "end_s": 3}, "out_of_range", "end_s", "must be after"),
        ({"scene_threshold": 2}, "out_of_range", "scene_threshold", "less than or equal to 1"),
        ({"strategy": "best"}, "invalid_value", "strategy", "uniform, fps, scene, keyframes"),
        ({"strategy": "fps"}, "invalid_value", "fps", "the fps strategy needs 'fps'"),
    ],
)  # fmt: skip
def test_the_form_and_the_chat_api_refuse_the_same_options_the_same_way(
    options: dict[str, Any], code: str, name: str, says: str
) -> None:
    form, chat = _form_error(options), _chat_error(options)
    assert (form.code, form.param) == (code, name), form.message
    assert (chat.code, chat.param) == (code, f"video_options.{name}"), chat.message
    assert says in form.message
    assert says in chat.message


def test_good_options_become_the_same_sampling_options() -> None:
    form = parse_analyze_form(
        FormData([("prompt", "q"), ("num_frames", "8"), ("strategy", "scene"), ("end_s", "30")]),
        ARGS,
    )
    assert form.sampling == SamplingOptions(num_frames=8, strategy=Strategy.SCENE, end_s=30.0)


def test_an_unknown_video_option_names_the_known_ones() -> None:
    error = _chat_error({"frames": 8})
    assert (error.code, error.param) == ("unknown_parameter", "video_options.frames")
    assert "num_frames" in error.message
