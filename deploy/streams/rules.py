"""Alert rules: a yes/no answer per window, counted into a rule's state. A rule fires when
`consecutive` windows in a row answered yes, then stays quiet (deduplicated) while the answers
stay yes; a no re-arms it. The state is kept with the stream, so a stream resumed on another
replica neither fires twice nor forgets a run of yeses."""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from typing import Any

from deploy.streams.stream_spec import AlertRule

YES, NO = "yes", "no"
CHOICES = (YES, NO)
RULE_PROMPT = "Answer yes or no. {question}"
_WORD = re.compile(r"[a-z]+")


def answer_of(text: str) -> str | None:
    """yes or no from a model's answer (a bare word, a JSON string or {"answer": ...}); None
    when it is neither (counted as no, and said in the window's rule results)."""
    value: Any = text.strip()
    with contextlib.suppress(ValueError):
        value = json.loads(value)
    if isinstance(value, dict):
        value = value.get("answer", "")
    words = _WORD.findall(str(value).lower())
    return words[0] if words and words[0] in CHOICES else None


@dataclass
class RuleState:
    run: int = 0  # windows in a row that answered yes
    active: bool = False  # fired, and no no since


def advance(rule: AlertRule, state: RuleState, answer: str | None) -> bool:
    """Count one window's answer into `state`; True when the rule fires now."""
    if answer != YES:
        state.run, state.active = 0, False
        return False
    state.run += 1
    if not state.active and state.run >= rule.consecutive:
        state.active = True
        return True
    return False


def load_states(raw: str | None, rules: tuple[AlertRule, ...]) -> dict[str, RuleState]:
    kept = json.loads(raw) if raw else {}
    return {
        rule.name: RuleState(**kept[rule.name]) if rule.name in kept else RuleState()
        for rule in rules
    }


def dump_states(states: dict[str, RuleState]) -> str:
    return json.dumps({name: vars(state) for name, state in states.items()})
