"""How a count written in digits reads: ``--n``, ``--page-size`` and the other count options, the N of a
phrase ("latest N rows"), the API's ``limit``. One rule for every length: a count past ``MAX_COUNT`` (SQL's
bigint, the largest LIMIT there is) asks for all and reads as ``MAX_COUNT``, be it 20 digits or 5,000.
int() alone refuses a string of more than 4,300 digits (Python's guard against quadratic conversion), so a
long count said "not a whole number"; here its digits are counted, not converted. Plain Python: the
commands that only check their arguments load this, not pydantic."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable

from common.defaults import MAX_COUNT

# the digits 0-9 only: int() also takes other scripts' digits and underscores, which no count here is written with
WHOLE_NUMBER = re.compile(r"\s*([+-]?)([0-9]+)\s*")


def read_count(text: str) -> int:
    """``text``, a whole number, between -MAX_COUNT and MAX_COUNT: a longer one reads as the bound of its sign.
    ValueError says when it is not a whole number; whether a negative or 0 is accepted is the caller's rule."""
    found = WHOLE_NUMBER.fullmatch(text)
    if found is None:
        raise ValueError(f"{text!r} is not a whole number")
    sign, digits = found.groups()
    digits = digits.lstrip("0") or "0"
    size = MAX_COUNT if len(digits) > len(str(MAX_COUNT)) else min(int(digits), MAX_COUNT)
    return -size if sign == "-" else size


def count_option(least: int) -> Callable[[str], int]:
    """The argparse reader of a count option (consumer_db's, the producer's): ``least`` or more, read as
    :func:`read_count` reads every count (at most ``MAX_COUNT``, whatever its length). ``--n -1`` once reached the
    SQL as ``LIMIT -1``; ``--start-row -5`` read as 0, ``--limit -1`` as nothing to read."""

    def read(text: str) -> int:
        try:
            value = read_count(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be {least} or more, got {value}")
        return value

    return read
