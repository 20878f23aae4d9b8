"""Query answers on the terminal: an aligned table, CSV, or JSON. Times as ISO-8601 UTC with a Z.

Each format writes the rows as they come (``write``), the text table a page of rows at a time: an answer is
never held whole as text. Only the standard library here: the command line imports this module for FORMATS
before it knows the command (consumer_db.cli).
"""

from __future__ import annotations

import csv
import functools
import io
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from itertools import accumulate, chain, islice
from typing import Any, TextIO

FORMATS = ("table", "csv", "json")
TABLE_PAGE = 1000  # rows the text table makes at a time; its first page sizes the columns

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


_table_float = "{:.3f}".format  # a float in the text table: three decimals


def cell(value: Any, *, for_table: bool = False) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, float):
        return _table_float(value) if for_table else repr(value)
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
    """Aligned columns: a text that reads as a number to the right, any other to the left. The first page of
    rows sizes the columns; a wider cell later widens its column from its own line on.

    A page at a time, column by column: a column's texts in one go (``_column_texts``), each distinct text's
    alignment decided once (``_padded``). Cell by cell, each cell asked what it was and its text parsed as a
    float, the table cost twice what JSON does: 27 ms against 12 for the fleet's 1-minute resample, 4,200 rows
    (docs/benchmarks.md section 3)."""
    names, rows = _first(rows)
    if not names:
        out.write("(no rows)\n")
        return
    widths = [len(name) for name in names]
    for number, page in enumerate(_pages(rows)):
        columns = [_column_texts([row.get(name) for row in page]) for name in names]
        if number == 0:
            widths = [max(width, *map(len, texts)) for width, texts in zip(widths, columns, strict=True)]
            out.write(_table_line(_padded(names, widths)) + _table_line(["-" * width for width in widths]))
        padded = []
        for i, texts in enumerate(columns):
            # each line's width: the widest cell of the column so far, this line's included
            at_line = list(accumulate(map(len, texts), max, initial=widths[i]))[1:]
            widths[i] = at_line[-1]
            padded.append(_padded(texts, at_line))
        out.writelines(map(_table_line, zip(*padded, strict=True)))


def _pages(rows: Iterator[Row]) -> Iterator[list[Row]]:
    while page := list(islice(rows, TABLE_PAGE)):
        yield page


# What ``cell`` writes in the table for a value of each of these kinds (exactly these: a bool is not an int here).
_TABLE_TEXT_OF_KIND = {float: _table_float, int: str, str: str, datetime: iso}


def _column_texts(values: list) -> list[str]:
    """``cell(value, for_table=True)`` of each value; when the values are of one kind (and NULLs), with that
    kind's text for all, without asking each value what it is."""
    kinds = set(map(type, values)) - {type(None)}
    text = _TABLE_TEXT_OF_KIND.get(kinds.pop()) if len(kinds) == 1 else None
    if text is None:
        return [cell(value, for_table=True) for value in values]
    return ["" if value is None else text(value) for value in values]


def _padded(texts: list[str], widths: list[int]) -> list[str]:
    """Each text padded to its width, to the right when it reads as a number. Each distinct text is parsed
    once: a column repeats its robots, its times and the idle zeros."""
    right = {text: _numeric(text) for text in set(texts)}
    return [text.rjust(width) if right[text] else text.ljust(width) for text, width in zip(texts, widths, strict=True)]


def _table_line(cells: Iterable[str]) -> str:
    return "  ".join(cells).rstrip() + "\n"


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
