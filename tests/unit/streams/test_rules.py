"""Alert rules: fire after `consecutive` yeses, once while the answers stay yes, again only
after a no; the state survives a replica move (dumped and loaded)."""

from __future__ import annotations

import pytest

from deploy.streams import rules
from deploy.streams.stream_spec import AlertRule, StreamSpec


def _fired(rule: AlertRule, answers: list[str | None]) -> list[int]:
    state = rules.RuleState()
    return [i for i, answer in enumerate(answers) if rules.advance(rule, state, answer)]


def test_a_rule_fires_after_its_consecutive_yeses_then_stays_quiet() -> None:
    rule = AlertRule(name="smoke", question="Is there smoke?", consecutive=3)
    assert _fired(rule, ["yes", "yes", "no", "yes", "yes", "yes", "yes", "yes"]) == [5]


def test_a_no_rearms_it() -> None:
    rule = AlertRule(name="smoke", question="Is there smoke?", consecutive=1)
    assert _fired(rule, ["yes", "yes", "no", "yes", None, "yes"]) == [0, 3, 5]


def test_the_state_survives_a_replica_move() -> None:
    rule = AlertRule(name="fall", question="Has a person fallen?", consecutive=2)
    states = rules.load_states(None, (rule,))
    assert not rules.advance(rule, states["fall"], "yes")
    moved = rules.load_states(rules.dump_states(states), (rule,))  # another replica
    assert rules.advance(rule, moved["fall"], "yes")
    again = rules.load_states(rules.dump_states(moved), (rule,))
    assert not rules.advance(rule, again["fall"], "yes")  # deduplicated across the move


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("yes", "yes"), (" No.", "no"), ('"yes"', "yes"), ('{"answer": "no"}', "no"),
        ("Yes, there is smoke", "yes"), ("maybe", None), ("", None), ("{}", None),
    ],
)  # fmt: skip
def test_answers_are_read_from_words_or_json(text: str, answer: str | None) -> None:
    assert rules.answer_of(text) == answer


def test_rule_names_must_differ_and_be_plain() -> None:
    with pytest.raises(ValueError, match="share the name 'a'"):
        StreamSpec(
            url="rtsp://cam/1",
            rules=(AlertRule(name="a", question="Fire?"), AlertRule(name="a", question="Smoke?")),
        )
    with pytest.raises(ValueError, match="letters, digits"):
        AlertRule(name="no spaces", question="Fire?")


def test_the_public_spec_never_shows_the_secret() -> None:
    spec = StreamSpec.model_validate(
        {"url": "rtsp://cam/1", "webhook": {"url": "https://hooks.example/x", "secret": "s" * 20}}
    )
    assert spec.public()["webhook"] == {"url": "https://hooks.example/x"}
    assert "s" * 20 not in str(spec.public())
