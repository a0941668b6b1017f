"""Token budgets of a job's merge requests: what the app's settings are checked against at
start (config/settings.py) and what the aggregation plans with (jobs/plan.py, jobs/aggregate.py)."""

from __future__ import annotations

# Tokens of a line's timestamp prefix "[00:00:00-00:00:30] " and its newline.
LINE_TOKENS = 16
# Tokens of a merge request's instructions (the prompt around the lines) and chat template.
PROMPT_TOKENS = 256


def merge_budget(max_model_len: int, answer_tokens: int) -> int:
    """Tokens of lines one merge request may carry."""
    return max_model_len - answer_tokens - PROMPT_TOKENS
