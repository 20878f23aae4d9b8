"""The header of a controller export, matched against the axis list (the schema lock)."""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass

from common.errors import CsvFormatError

AXIS_COLUMN = re.compile(r"^axis\s*[#_ -]?\s*(\d+)$", re.IGNORECASE)
TIME_COLUMNS = ("time", "timestamp")
KNOWN_COLUMNS = ("trait",)  # carried by real exports, not needed: always "current"


@dataclass(frozen=True)
class ColumnReport:
    source: str
    names: list[str]
    width: int
    time_index: int | None
    axis_indexes: list[int | None]
    """Column of each axis of the list, in list order; ``None`` where the file lacks it."""
    axes_read: list[int]
    axes_missing: list[int]
    extra_axes: list[int]
    other_columns: list[str]

    def log(self, logger: logging.Logger) -> None:
        logger.info(
            "%s: reading axes %s, time column %s",
            self.source,
            _ranges(self.axes_read),
            self.names[self.time_index] if self.time_index is not None else "none (synthesised)",
        )
        if self.axes_missing:
            logger.info(
                "%s: axes %s are not in the file: OK null in every row", self.source, _ranges(self.axes_missing)
            )
        if self.extra_axes:
            logger.warning(
                "%s: axis columns %s are outside the axis list and ignored", self.source, _ranges(self.extra_axes)
            )
        if self.other_columns:
            logger.warning("%s: unknown columns ignored: %s", self.source, ", ".join(self.other_columns))


def read_header(reader: Iterator[list[str]], axes: list[int], *, source: str) -> ColumnReport:
    """Consume the first non-blank record as the header and match it against ``axes``."""
    try:
        names = next((r for r in reader if any(c.strip() for c in r)), None)
    except csv.Error as exc:  # e.g. a quote left open
        raise CsvFormatError(f"{source}: the header is not readable as CSV ({exc})") from None
    if names is None:
        raise CsvFormatError(f"{source}: the file is empty (no header line)")
    if any("\x00" in name for name in names):
        # Read as UTF-8, UTF-16 is every other byte NUL: the header's cells are not worth printing.
        raise CsvFormatError(
            f'{source}: the header holds NUL bytes: the file is UTF-16 (Excel\'s "Unicode text") or not text; '
            "save it as CSV UTF-8"
        )
    names = [n.strip() for n in names]
    while names and not names[-1]:
        names.pop()  # trailing empty columns
    found: dict[int, int] = {}
    time_index: int | None = None
    other: list[str] = []
    for index, name in enumerate(names):
        match = AXIS_COLUMN.match(name)
        if match:
            axis = int(match.group(1))
            if axis in found:
                raise CsvFormatError(f"{source}: axis {axis} appears twice in the header ({name!r})")
            found[axis] = index
        elif name.lower() in TIME_COLUMNS:
            if time_index is not None:
                raise CsvFormatError(f"{source}: two time columns ({names[time_index]!r} and {name!r})")
            time_index = index
        elif name and name.lower() not in KNOWN_COLUMNS:
            other.append(name)
    if not found:
        raise CsvFormatError(f"{source}: no axis column in the header (expected 'Axis #1', ...): {names}")
    return ColumnReport(
        source=source,
        names=names,
        width=len(names),
        time_index=time_index,
        axis_indexes=[found.get(axis) for axis in axes],
        axes_read=[a for a in axes if a in found],
        axes_missing=[a for a in axes if a not in found],
        extra_axes=sorted(set(found) - set(axes)),
        other_columns=other,
    )


def _ranges(axes: list[int]) -> str:
    """``[1, 2, 3, 5]`` -> ``1-3,5``: short enough for a log line."""
    parts: list[tuple[int, int]] = []
    for axis in axes:
        if parts and parts[-1][1] == axis - 1:
            parts[-1] = (parts[-1][0], axis)
        else:
            parts.append((axis, axis))
    return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in parts) or "none"
