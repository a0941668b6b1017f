"""Whole numbers read from text a client (or a remote server) controls: headers, query strings.

`str.isdigit()` is true for '²' and '١٢', which `int()` then refuses (a 500 where a 400 was
meant), and `int()` takes 4,300 digits; only ASCII decimals of a bounded length are numbers here.
"""

from __future__ import annotations

import re

# 18 digits: every value fits in a signed 64-bit integer (what engines and databases take).
MAX_DIGITS = 18
_DECIMAL = re.compile(rf"[0-9]{{1,{MAX_DIGITS}}}")

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def decimal(text: str | None) -> int | None:
    """`text` as a non-negative integer when it is 1-18 ASCII digits and nothing else; else None."""
    if text is None or not _DECIMAL.fullmatch(text):
        return None
    return int(text)
