"""Parsing OpenAI chat requests into a plan (no Ray): messages, media sources, options, errors."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from deploy.api.openai_protocol import ChatPlan, parse_chat
from deploy.config.settings import AppArgs
from deploy.core.errors import InvalidRequest, NotFound, VidserveError
from deploy.core.messages import MediaKind, Role

SERVED = ["tiny", "qwen2.5vl:7b"]


def _args(**sections: Any) -> AppArgs:
    return AppArgs.model_validate({"llm": {"model": "Qwen/Qwen2.5-VL-7B-Instruct"}, **sections})


def _plan(body: dict[str, Any], args: AppArgs | None = None) -> ChatPlan:
    return parse_chat(json.dumps({"model": "tiny", **body}).encode(), args or _args(), SERVED)


def _error(body: dict[str, Any] | bytes, args: AppArgs | None = None) -> VidserveError:
    raw = body if isinstance(body, bytes) else json.dumps({"model": "tiny", **body}).encode()
    with pytest.raises(VidserveError) as raised:
        parse_chat(raw, args or _args(), SERVED)
    return raised.value


def _user(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": list(parts)}


def _video(url: str) -> dict[str, Any]:
    return {"type": "video_url", "video_url": {"url": url}}


def test_a_conversation_becomes_turns_with_the_media_on_its_turn() -> None:
    plan = _plan(
        {
            "messages": [
                {"role": "developer", "content": "Be brief."},
                _user(
                    {"type": "text", "text": "Look:"},
                    _video("https://example.com/a.mp4"),
                    {"type": "text", "text": "what moves?"},
                ),
                {"role": "assistant", "content": [{"type": "text", "text": "A ball."}]},
                {"role": "user", "content": "Which colour?"},
            ],
            "max_completion_tokens": 30,
            "max_tokens": 10,
            "stop": "END",
            "seed": 4,
            "top_p": 0.5,
        }
    )
    assert [(t.role, t.text, t.media) for t in plan.turns] == [
        (Role.SYSTEM, "Be brief.", False),
        (Role.USER, "Look:\nwhat moves?", True),
        (Role.ASSISTANT, "A ball.", False),
        (Role.USER, "Which colour?", False),
    ]
    assert plan.media is not None
    assert (plan.media.kind, plan.media.url) == (MediaKind.VIDEO, "https://example.com/a.mp4")
    assert plan.media.param == "messages[1].content[1].video_url.url"
    # max_completion_tokens wins over the deprecated max_tokens, as in OpenAI's API.
    assert plan.params.max_tokens == 30
    assert (plan.params.stop, plan.params.seed, plan.params.top_p) == (("END",), 4, 0.5)
    assert not plan.stream


def test_data_urls_decode_to_bytes_or_to_a_list_of_frames() -> None:
    payload = b"\x00\x00\x00\x18ftypmp42 and more"
    url = "data:video/mp4;base64," + base64.b64encode(payload).decode()
    plan = _plan({"messages": [_user(_video(url))]})
    assert plan.media is not None
    assert plan.media.data == payload
    # A scheme is case-insensitive (RFC 3986), the media type too.
    upper = _plan({"messages": [_user(_video("DATA:VIDEO/MP4;BASE64," + url.split(",", 1)[1]))]})
    assert upper.media is not None
    assert upper.media.data == payload
    frames = [b"\xff\xd8\xffone", b"\xff\xd8\xfftwo"]
    listed = "data:video/jpeg;base64," + ",".join(base64.b64encode(f).decode() for f in frames)
    plan = _plan({"messages": [_user(_video(listed))]})
    assert plan.media is not None
    assert plan.media.frames == frames


@pytest.mark.parametrize(
    "payload",
    ["QUJD QUJD", "QUJD\nQUJD", "QUJ", "QU=D", "QUJD====", "QUJD\u00e9", "QUJ*"],
    ids=[
        "space",
        "newline",
        "short",
        "padding-inside",
        "extra-padding",
        "not-ascii",
        "not-alphabet",
    ],
)
def test_a_data_url_payload_that_is_not_strict_base64_is_a_400(payload: str) -> None:
    for mime in ("video/mp4", "video/jpeg"):  # one video, and a list of frames
        error = _error({"messages": [_user(_video(f"data:{mime};base64,{payload}"))]})
        assert isinstance(error, InvalidRequest)
        assert (error.code, error.param) == (
            "invalid_data_url",
            "messages[0].content[0].video_url.url",
        ), error.message


def test_a_large_data_url_decodes_to_its_exact_bytes() -> None:
    payload = bytes(range(256)) * 20_000 + b"\x01"  # 5 MB, every byte value, padding at the end
    url = "data:video/mp4;base64," + base64.b64encode(payload).decode()
    plan = _plan({"messages": [_user(_video(url))]})
    assert plan.media is not None
    assert plan.media.data == payload


def test_options_and_response_formats() -> None:
    plan = _plan(
        {
            "messages": [{"role": "user", "content": "hi"}],
            "video_options": {"num_frames": 8, "start_s": 1, "end_s": 5},
            "response_format": {"type": "json_object"},
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    assert (plan.sampling.num_frames, plan.sampling.start_s, plan.sampling.end_s) == (8, 1, 5)
    assert plan.params.json_schema == {"type": "object"}
    assert plan.params.max_tokens == 512  # generation.default_max_tokens
    assert plan.stream
    assert plan.include_usage
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    plan = _plan(
        {
            "messages": [{"role": "user", "content": "hi"}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": schema},
            },
        }
    )
    assert plan.params.json_schema == schema


@pytest.mark.parametrize(
    ("body", "kind", "code", "param"),
    [
        ({"messages": [], }, InvalidRequest, "invalid_value", "messages"),
        ({"messages": [{"role": "user", "content": "x"}], "logit_bias": {}}, InvalidRequest,
         "unknown_parameter", "logit_bias"),
        ({"messages": [_user({"type": "audio_url", "audio_url": {"url": "x"}})]}, InvalidRequest,
         "invalid_value", "messages[0].content[0]"),
        ({"messages": [_user({"type": "video_url", "video_url": {}})]}, InvalidRequest,
         "invalid_value", "messages[0].content[0].video_url.url"),
        ({"messages": [_user(_video("data:video/mp4,rawbytes"))]}, InvalidRequest,
         "invalid_data_url", "messages[0].content[0].video_url.url"),
        ({"messages": [{"role": "system", "content": [_video("https://e.com/v.mp4")]},
                       {"role": "user", "content": "x"}]}, InvalidRequest, "invalid_value",
         "messages[0].content[0]"),
        ({"messages": [{"role": "user", "content": "x"}], "stop": ["a", "b", "c", "d", "e"]},
         InvalidRequest, "invalid_value", "stop"),
        ({"messages": [{"role": "user", "content": "x"}],
          "response_format": {"type": "json_schema"}}, InvalidRequest, "invalid_json_schema",
         "response_format.json_schema"),
        ({"messages": [{"role": "user", "content": "x"}], "video_options": {"fps": 60}},
         InvalidRequest, "out_of_range", "video_options.fps"),
        ({"messages": [{"role": "user", "content": "x" * 40_000}]}, InvalidRequest,
         "prompt_too_long", "messages"),
    ],
    ids=["no-messages", "unknown-parameter", "unknown-part-type", "part-without-url",
         "data-url-not-base64", "media-in-a-system-turn", "five-stop-sequences",
         "json-schema-without-schema", "fps-over-the-limit", "too-much-text"],
)  # fmt: skip
def test_bad_requests_name_what_to_fix(
    body: dict[str, Any], kind: type[VidserveError], code: str, param: str
) -> None:
    error = _error(body)
    assert isinstance(error, kind)
    assert (error.code, error.param) == (code, param), error.message
    assert error.status_code == 400


def test_an_unknown_model_is_a_404_listing_the_served_ones() -> None:
    error = _error({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]})
    assert isinstance(error, NotFound)
    assert "'tiny'" in error.message
    assert "'qwen2.5vl:7b'" in error.message


def test_a_body_that_is_not_json_is_a_400() -> None:
    assert _error(b"{not json").code == "invalid_json"


def test_a_question_over_several_videos_names_them_or_searches() -> None:
    ask = {"messages": [{"role": "user", "content": "Where does the truck refuel?"}]}
    named = _plan({**ask, "video_options": {"job_ids": ["job_a", "job_b"]}})
    assert (named.job_ids, named.search, named.media) == (("job_a", "job_b"), None, None)
    by_question = _plan({**ask, "video_options": {"search": True}})
    assert (by_question.job_ids, by_question.search) == ((), "")
    by_words = _plan({**ask, "video_options": {"search": " gas station "}})
    assert by_words.search == "gas station"
    assert _plan(ask).search is None


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"job_ids": "job_a"}, "video_options.job_ids"),
        ({"job_ids": []}, "video_options.job_ids"),
        ({"job_ids": [1]}, "video_options.job_ids"),
        ({"job_ids": ["j"] * 6}, "video_options.job_ids"),  # search.max_videos is 5
        ({"search": 3}, "video_options.search"),
        ({"search": "  "}, "video_options.search"),
        ({"job_ids": ["a"], "search": "x"}, "video_options.search"),
        ({"job_ids": ["a"], "job_id": "b"}, "video_options.job_ids"),
    ],
)
def test_bad_several_video_questions_are_400_naming_the_option(
    options: dict[str, Any], param: str
) -> None:
    error = _error({"messages": [{"role": "user", "content": "q"}], "video_options": options})
    assert error.status_code == 400
    assert error.param == param


def test_several_videos_and_media_in_the_messages_is_a_400() -> None:
    error = _error(
        {
            "messages": [_user({"type": "text", "text": "q"}, _video("https://e.com/a.mp4"))],
            "video_options": {"search": True},
        }
    )
    assert error.param == "video_options.search"
