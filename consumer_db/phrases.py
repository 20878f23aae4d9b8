"""The phrase table: ``python -m consumer_db query "<phrase>"`` -> one function of :mod:`common.store.queries`.

A phrase matches case- and space-insensitively (hyphens and underscores count as spaces), by its own
words or a synonym; "latest 50 rows" carries its number (``{n}`` in the table), 1 or more. An unknown
phrase is an error listing the known.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from common.counts import read_count
from common.defaults import GAP_THRESHOLD_S, TICK_SECONDS
from common.errors import AxiswatchError

if TYPE_CHECKING:
    from sqlalchemy import Connection

# Each phrase imports its query when it runs (common.store.queries, .maintenance): listing the phrases or
# telling a misspelt one does not load SQLAlchemy (~0.2 s of CPU).

Rows = list[dict[str, Any]]


class UnknownPhrase(AxiswatchError, ValueError):
    pass


class BadNumber(AxiswatchError, ValueError):
    """A phrase whose number asks for nothing ("latest 0 rows")."""


@dataclass(frozen=True)
class QueryArgs:
    robot_id: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    at: datetime | None = None
    n: int = 20
    gap_threshold_s: float = GAP_THRESHOLD_S
    tick_seconds: float = TICK_SECONDS


@dataclass(frozen=True)
class Answer:
    """The main table, plus named side tables (data health's gaps)."""

    rows: Rows
    tables: dict[str, Rows] = field(default_factory=dict)
    note: str | None = None  # for the person asking (the command prints it on stderr), not part of the answer


@dataclass(frozen=True)
class Phrase:
    name: str
    synonyms: tuple[str, ...]
    run: Callable[[Connection, QueryArgs, int | None], Answer]
    help: str

    def match(self, text: str) -> tuple[bool, int | None]:
        """Whether ``text`` says this phrase, and the number it carries in place of ``{n}`` (or None)."""
        said = normalize(text)
        for words in (self.name, *self.synonyms):
            pattern = re.escape(normalize(words)).replace(re.escape("{n}"), r"([0-9]+)?")
            if found := re.fullmatch(pattern, said):
                number = found.group(1) if found.groups() else None
                return True, read_count(number) if number else None
        return False, None


def normalize(text: str) -> str:
    return re.sub(r"[\s\-_]+", "", text.lower())


def _latest(conn, a: QueryArgs, _n) -> Answer:
    from common.store import queries

    return Answer(queries.latest_per_axis(conn, robot_id=a.robot_id, start=a.start, end=a.end))


def _peak(conn, a: QueryArgs, _n) -> Answer:
    from common.store import queries

    peak = queries.one_minute_peak(conn, robot_id=a.robot_id, at=a.at or a.end)
    return Answer([peak] if peak else [])


def _rows(conn, a: QueryArgs, n) -> Answer:
    from common.store import queries

    return Answer(queries.latest_rows(conn, n=a.n if n is None else n, robot_id=a.robot_id, start=a.start, end=a.end))


def _window_peaks(conn, a: QueryArgs, _n) -> Answer:
    from common.store import queries

    return Answer(queries.window_peaks(conn, robot_id=a.robot_id, start=a.start, end=a.end))


def _resample(conn, a: QueryArgs, _n) -> Answer:
    from common.store import queries

    rows, first = queries.resample_newest_minutes(
        conn, max_rows=RESAMPLE_ROWS, robot_id=a.robot_id, start=a.start, end=a.end
    )
    if first is None:
        return Answer(rows)
    return Answer(rows, note=LEFT_OUT.format(first=f"{first:%Y-%m-%dT%H:%MZ}", rows=len(rows), most=RESAMPLE_ROWS))


# The 1-minute curve is one row per robot, minute and axis: the fleet's 4 hours at 100 robots are 334,600 rows,
# which nobody reads and which took 1.8 s to compute and send. An answer holds the range's newest minutes up
# to this many rows (the fleet's newest 3 minutes, one robot's newest 5.9 hours); the note says what was left
# out and how to ask for it (docs/consumer_db.md, "What a long range's curve should be").
RESAMPLE_ROWS = 5000
LEFT_OUT = (
    "note: the newest minutes of the range only, from {first} ({rows:,} rows; an answer holds at most {most:,}, "
    "one per robot, minute and axis); for earlier minutes give --start/--end, or --robot-id, "
    'or ask "show hourly resample" for the whole range'
)


def _hourly(conn, a: QueryArgs, _n) -> Answer:
    from common.store import queries

    return Answer(queries.resample_hourly(conn, robot_id=a.robot_id, start=a.start, end=a.end))


def _summary(conn, a: QueryArgs, _n) -> Answer:
    from common.store import queries

    return Answer(queries.axis_summary(conn, robot_id=a.robot_id, start=a.start, end=a.end))


def _health(conn, a: QueryArgs, _n) -> Answer:
    from common.store import queries

    robots = queries.data_health(
        conn,
        robot_id=a.robot_id,
        start=a.start,
        end=a.end,
        gap_threshold_s=a.gap_threshold_s,
        tick_seconds=a.tick_seconds,
    )
    gaps = [{"robot_id": r["robot_id"], **g} for r in robots for g in r["gaps"]]
    summary = [{k: v for k, v in r.items() if k != "gaps"} for r in robots]
    return Answer(summary, {"gaps": gaps})


def _alerts(conn, a: QueryArgs, n) -> Answer:
    from common.store import queries

    return Answer(queries.alert_history(conn, robot_id=a.robot_id, start=a.start, end=a.end, limit=n))


def _maintenance(conn, a: QueryArgs, n) -> Answer:
    from common.store.maintenance import maintenance_history

    return Answer(maintenance_history(conn, robot_id=a.robot_id, start=a.start, end=a.end, limit=n))


def _outcomes(conn, a: QueryArgs, _n) -> Answer:
    from common.store.maintenance import outcomes_per_detector

    return Answer(outcomes_per_detector(conn, robot_id=a.robot_id, start=a.start, end=a.end))


PHRASES: tuple[Phrase, ...] = (
    Phrase(
        "show latest per axis",
        ("latest per axis", "latest value per axis", "latest values", "show latest", "latest", "current values"),
        _latest,
        "one row per axis: its newest timestamp and value",
    ),
    Phrase(
        "show 1-minute peak",
        ("1 minute peak", "one minute peak", "show one-minute peak", "minute peak", "peak last minute"),
        _peak,
        "the axis with the highest current in the 60 s up to the newest reading (or --at)",
    ),
    Phrase(
        "show latest {n} rows",
        ("latest {n} rows", "last {n} rows", "show last {n} rows", "latest {n} readings", "tail"),
        _rows,
        "the newest readings, one column per axis (N from the phrase, else --n)",
    ),
    Phrase(
        "show window peaks",
        ("window peaks", "peaks", "peak per axis", "show peaks"),
        _window_peaks,
        "per axis, the highest current in --start/--end and when",
    ),
    Phrase(
        "show 1-minute resample",
        (
            "1 minute resample",
            "one minute resample",
            "resample",
            "smoothing",
            "smoothed",
            "1 minute means",
            "per minute means",
        ),
        _resample,
        "per minute and axis: mean (smoothed), max and count; the range's newest minutes, "
        f"at most {RESAMPLE_ROWS:,} rows",
    ),
    Phrase(
        "show hourly resample",
        ("hourly resample", "1 hour resample", "one hour resample", "hourly means", "per hour means", "hourly"),
        _hourly,
        "per hour and axis: mean, max and count (a long range's curve: 60x fewer rows than per minute)",
    ),
    Phrase(
        "show per-axis summary",
        ("per axis summary", "axis summary", "summary", "show summary"),
        _summary,
        "per axis: rows, non-null, OK-null share, idle share, mean/max while active",
    ),
    Phrase(
        "show data health",
        ("data health", "health", "coverage", "data coverage", "show coverage", "gaps", "show gaps"),
        _health,
        "time span, expected vs present readings and rows, gaps over --gap-threshold, axes never seen",
    ),
    Phrase(
        "show alert history",
        ("alert history", "alerts", "show alerts"),
        _alerts,
        "alert events open at some moment of --start/--end, newest first",
    ),
    Phrase(
        "show maintenance log",
        ("maintenance log", "maintenance", "maintenance history", "show maintenance"),
        _maintenance,
        "what was done to which joint (part replaced, inspected, lubricated), newest first, in --start/--end",
    ),
    Phrase(
        "show outcomes per detector",
        ("outcomes per detector", "outcomes", "detector outcomes", "show outcomes", "how many alerts were real"),
        _outcomes,
        "per detector: alerts opened in --start/--end, how many were judged, each outcome, the share judged real",
    ),
)


def find(text: str) -> tuple[Phrase, int | None]:
    for phrase in PHRASES:
        matched, number = phrase.match(text)
        if matched:
            return phrase, number
    raise UnknownPhrase(f"unknown phrase {text!r}; known phrases:\n{known_phrases()}")


def known_phrases() -> str:
    return "\n".join(
        f'  "{p.name}" ({p.help}); also: {", ".join(repr(s) for s in p.synonyms)}'.replace("{n}", "N") for p in PHRASES
    )


def ask(conn: Connection, text: str, args: QueryArgs) -> Answer:
    phrase, number = find(text)
    if number is not None and number < 1:
        raise BadNumber(f"{text!r}: the number must be 1 or more, got {number}")
    return phrase.run(conn, args, number)
