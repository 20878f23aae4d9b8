"""Query answers on the terminal: an aligned table, CSV, or JSON. Times as ISO-8601 UTC with a Z."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from typing import Any

from common.wire.schemas import iso_utc

FORMATS = ("table", "csv", "json")


def iso(value: datetime) -> str:
    """Milliseconds and a Z, like the controller's export; microseconds when the value has them."""
    if value.microsecond % 1000:
        return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    return iso_utc(value)


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


def render_table(rows: list[dict]) -> str:
    if not rows:
        return "(no rows)\n"
    names = columns(rows)
    body = [[cell(row.get(c), for_table=True) for c in names] for row in rows]
    widths = [max(len(n), *(len(r[i]) for r in body)) for i, n in enumerate(names)]

    def line(values: list[str]) -> str:
        cells = zip(values, widths, strict=True)
        return "  ".join(v.rjust(w) if _numeric(v) else v.ljust(w) for v, w in cells).rstrip()

    return "\n".join([line(names), line(["-" * w for w in widths]), *map(line, body)]) + "\n"


def render_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    names = columns(rows)
    writer.writerow(names)
    writer.writerows([cell(row.get(c)) for c in names] for row in rows)
    return out.getvalue()


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def render_json_rows(rows: list[dict], margin: str = "") -> str:
    """A JSON array, one row per line: json.dumps with indent runs the pure-Python encoder, while each
    compact row here goes through the C one, and one row per line stays readable."""
    if not rows:
        return "[]"
    lines = (f"{margin}  {json.dumps(row, default=_json_default)}" for row in rows)
    return "[\n" + ",\n".join(lines) + f"\n{margin}]"


def render(rows: list[dict], tables: dict[str, list[dict]], fmt: str) -> str:
    """The main rows and the side tables: JSON nests them, CSV writes only the main rows (one table per
    file), the text table prints each under its name."""
    if fmt == "json":
        if not tables:
            return render_json_rows(rows) + "\n"
        named = [f"  {json.dumps(name)}: {render_json_rows(r, '  ')}" for name, r in {"rows": rows, **tables}.items()]
        return "{\n" + ",\n".join(named) + "\n}\n"
    if fmt == "csv":
        return render_csv(rows)
    parts = [render_table(rows)]
    parts += [f"\n{name}:\n{render_table(side)}" for name, side in tables.items()]
    return "".join(parts)


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
