"""What the property-based tests share: their hypothesis budget and the awkward texts.

Budgets are small (a few seconds per test on 2 cores); raise FUZZ_EXAMPLES to search longer,
e.g. `FUZZ_EXAMPLES=2000 pytest tests/test_fuzz_readers.py tests/test_fuzz_budget.py`.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from nanonet.errors import NanoNetError

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Pieces that break naive parsers: separators, quotes, line ends of every kind, NUL, BOM,
# Unicode line separators (str.splitlines splits at them), backslashes, JSON syntax.
SPECIAL = [
    "\n",
    "\r",
    "\r\n",
    '"',
    '""',
    "'",
    ",",
    "\t",
    "\x00",
    "\ufeff",
    "\u2028",
    "\x85",
    "\x1c",
    " ",
    "\\",
    "{",
    "}",
    "[",
    "NA",
    "null",
    "#",
    "é",
    "😀",
]
_chars = st.characters(exclude_categories=("Cs",))  # a lone surrogate cannot be UTF-8 encoded
TEXT = st.lists(st.one_of(st.text(_chars, max_size=6), st.sampled_from(SPECIAL)), max_size=5).map(
    "".join
)


def one_sentence(err: NanoNetError) -> None:
    """The CLI prints a NanoNetError as one stderr line: it must not hold a line break."""
    assert "\n" not in str(err) and "\r" not in str(err), f"a message of several lines: {err!r}"
