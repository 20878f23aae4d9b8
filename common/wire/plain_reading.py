"""The fast path of ``ReadingPolicy.read_values`` (issue 23): a reading parsed by msgspec, several times faster
than pydantic, and trusted only where it provably reads the message as pydantic's ``Reading`` does. Its own
module so that msgspec is imported where readings are read this way (the sink), not by every command.
"""

from __future__ import annotations

import re
import sys
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from common.wire.schemas import ReadingValues, _no_repeated_key, utc

# A current as msgspec must read it: a finite number (past the largest double, a JSON number reads as inf).
_FiniteAmps = Annotated[float, msgspec.Meta(ge=-sys.float_info.max, le=sys.float_info.max)]


class _WireReading(msgspec.Struct, forbid_unknown_fields=True):
    """``Reading``'s shape for msgspec's JSON parser, the fast path of ``ReadingPolicy.read_values``. msgspec
    is stricter than pydantic where they differ on this shape (an axis key must be a plain integer, "01" is
    not; ``true`` is no number) except for the time, which is therefore read as text (``_PLAIN_TIME``,
    ``datetime.fromisoformat``); and it keeps the last of a repeated key, which ``_no_repeated_key`` rules out."""

    schema_version: Literal[1]
    robot_id: str
    ts: str
    currents: dict[int, _FiniteAmps | None]
    row: int | None | msgspec.UnsetType = msgspec.UNSET


_WIRE_READING = msgspec.json.Decoder(_WireReading)

# The times the fast path parses itself: what the producer writes, and any ISO-8601 time with seconds, at most
# six digits of a fraction (pydantic truncates a seventh, datetime too: left to pydantic all the same) and an
# upper-case T and Z (pydantic refuses "t" and "z"). ASCII digits only (``\d`` takes other scripts' digits).
_PLAIN_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?(?:Z|[+-][0-9]{2}:[0-5][0-9])"
)


def plain_values(raw: bytes | str) -> ReadingValues | None:
    """The reading as pydantic's ``Reading.from_bytes`` would read it, or None when this cannot be sure of
    that (then ``Reading`` decides and says why). Never refuses by itself, so every reason stays pydantic's."""
    try:
        wire = _WIRE_READING.decode(raw)
    except msgspec.DecodeError:
        return None
    row = None if wire.row is msgspec.UNSET else wire.row
    keys = 4 + len(wire.currents) + (wire.row is not msgspec.UNSET)
    if not (0 < len(wire.robot_id) <= 64 and _PLAIN_TIME.fullmatch(wire.ts) and _no_repeated_key(raw, keys)):
        return None
    try:  # a day past the month's end, hour 24, second 60 or an offset of 24 h: pydantic refuses them too
        ts = utc(datetime.fromisoformat(wire.ts))
    except ValueError:
        return None
    return ReadingValues(wire.robot_id, ts, row, wire.currents)
