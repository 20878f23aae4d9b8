"""One XLSX workbook from tables of dicts (openpyxl, write-only: a row at a time, little memory)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell

TIME_FORMAT = "yyyy-mm-dd hh:mm:ss.000"


def write_workbook(path: Path, sheets: dict[str, list[dict]]) -> None:
    """A sheet per table; the first row holds the column names. Excel has no time zones, so times are
    written as UTC wall-clock values and their column names say "(UTC)"."""
    book = Workbook(write_only=True)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title=title[:31])  # Excel's limit on sheet names
        names = list(dict.fromkeys(key for row in rows for key in row))
        timed = {n for n in names if any(isinstance(row.get(n), datetime) for row in rows)}
        sheet.append([f"{n} (UTC)" if n in timed else n for n in names])
        for row in rows:
            sheet.append([_cell(sheet, row.get(n)) for n in names])
    book.save(path)


def _cell(sheet, value: Any) -> Any:
    if isinstance(value, datetime):
        cell = WriteOnlyCell(sheet, value=value.astimezone(UTC).replace(tzinfo=None))
        cell.number_format = TIME_FORMAT
        return cell
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    return value
