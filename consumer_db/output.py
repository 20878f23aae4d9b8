"""Query answers on the terminal: an aligned table, CSV, or JSON. Times as ISO-8601 UTC with a Z.

Each format writes the rows as they come (``write``): an answer is never held whole as text. Only the
standard library here: the command line imports this module for FORMATS before it knows the command
(consumer_db.cli).
"""

from __future__ import annotations

import csv
import functools
import io
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from itertools import chain, islice
from typing import Any, TextIO

FORMATS = ("table", "csv", "json")
TABLE_PAGE = 1000  # rows the text table reads ahead to size its columns; a wider cell later widens them from there

Row = dict[str, Any]


# Kept for the times seen last: an answer repeats a few (each robot's 14 axes share a reading's time, the
# hourly resample's 5,600 rows hold 4 hours), and writing one costs more than its row's other cells (the
# fleet's hourly resample as JSON: 27 -> 19 ms; docs/benchmarks.md section 3). Equal instants write alike.
@functools.lru_cache(maxsize=256)
def iso(value: datetime) -> str:
    """Milliseconds and a Z, like the controller's export (common.wire.schemas.iso_utc); microseconds when
    the value has them. Stored times are aware UTC; a naive one is refused, never read as local time."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: axiswatch shows UTC instants only")
    spec = "microseconds" if value.microsecond % 1000 else "milliseconds"
    return value.astimezone(UTC).isoformat(timespec=spec).replace("+00:00", "Z")


def cell(value: Any, *, for_table: bool = False) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, float):
        return f"{value:.3f}" if for_table else repr(value)
    if isinstance(value, (list, tuple)):
        return " ".join(cell(v, for_table=for_table) for v in value)
    return str(value)


def columns(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(key for row in rows for key in row))


def _first(rows: Iterable[Row]) -> tuple[list[str], Iterator[Row]]:
    """The column names (the first row's keys: every row of an answer has the same) and all the rows."""
    rows = iter(rows)
    first = next(rows, None)
    if first is None:
        return [], iter(())
    return list(first), chain((first,), rows)


def write_table(out: TextIO, rows: Iterable[Row]) -> None:
    names, rows = _first(rows)
    if not names:
        out.write("(no rows)\n")
        return
    ahead = [[cell(row.get(c), for_table=True) for c in names] for row in islice(rows, TABLE_PAGE)]
    widths = [max(len(n), *(len(r[i]) for r in ahead)) for i, n in enumerate(names)]

    def line(values: list[str]) -> str:
        for i, value in enumerate(values):
            widths[i] = max(widths[i], len(value))
        cells = zip(values, widths, strict=True)
        return "  ".join(v.rjust(w) if _numeric(v) else v.ljust(w) for v, w in cells).rstrip() + "\n"

    out.write(line(names) + line(["-" * w for w in widths]))
    out.writelines(map(line, ahead))
    out.writelines(line([cell(row.get(c), for_table=True) for c in names]) for row in rows)


def write_csv(out: TextIO, rows: Iterable[Row]) -> None:
    names, rows = _first(rows)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names)
    writer.writerows([cell(row.get(c)) for c in names] for row in rows)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


# One encoder for every row: json.dumps(default=...) builds a new one per call. Compact rows go through the
# C encoder (indent= would run the pure-Python one: 2.2 s of a 4.2 s command once, issue 23).
_encode = json.JSONEncoder(default=_json_default).encode


def write_json_rows(out: TextIO, rows: Iterable[Row], margin: str = "") -> None:
    """A JSON array, one compact row per line: readable, and each line written as its row comes."""
    separator = "\n"
    out.write("[")
    for row in rows:
        out.write(f"{separator}{margin}  {_encode(row)}")
        separator = ",\n"
    out.write("]" if separator == "\n" else f"\n{margin}]")


def write(out: TextIO, rows: Iterable[Row], tables: dict[str, Iterable[Row]], fmt: str) -> None:
    """The main rows and the side tables, in order: JSON nests them, CSV writes only the main rows (one table
    per file), the text table prints each under its name."""
    if fmt == "json":
        if not tables:
            write_json_rows(out, rows)
            out.write("\n")
            return
        out.write("{")
        for i, (name, part) in enumerate({"rows": rows, **tables}.items()):
            out.write(f"{',' if i else ''}\n  {json.dumps(name)}: ")
            write_json_rows(out, part, "  ")
        out.write("\n}\n")
    elif fmt == "csv":
        write_csv(out, rows)
    else:
        write_table(out, rows)
        for name, side in tables.items():
            out.write(f"\n{name}:\n")
            write_table(out, side)


def render(rows: Iterable[Row], tables: dict[str, Iterable[Row]], fmt: str) -> str:
    """``write`` into a string (tests, the benchmark's timing of the output alone)."""
    out = io.StringIO()
    write(out, rows, tables, fmt)
    return out.getvalue()


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
