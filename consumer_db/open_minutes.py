"""The writer of ``open_minute`` (PostgreSQL): each robot's minutes not folded yet, one row per robot and minute,
kept up to date by the writer that stores the readings, in the same transaction (``rollup_writer.add``).

The rows are built here, in the client, from readings in memory: the server only reads the stored rows of the
write's minutes by their key and writes them back whole. Readings that are the only rows of their robot's span
(``NewRows.wide``: the sink's and the ingest's usual write) carry on from the minute's stored row, reading by
reading in time order, when they all come after its last one (the longest step between two readings needs the
neighbours); any other minute of the write (a reading before the row's last one, a write through the staging
table: a redelivery, a reading stored in part) is built afresh from its raw rows, read back in time order.
Either way a row's sums add the minute's currents one by one in time order, as a fold reading them in that order
does, so the row is the same whatever writes brought its readings. A fold deletes the rows of the minutes it
folds (``delete_folded``), in its own transaction.

Costs (docs/benchmarks.md, section 3): built in SQL (minute15) the statement took ~22 ms more of the server's
CPU per 100-robot tick than the readings' write; built here, one key look-up and one write of ~100 rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from msgspec.json import encode
from sqlalchemy import Connection, text

from common.store.rollup import floor_minute

MINUTE = timedelta(minutes=1)
_LAST = MINUTE - timedelta(microseconds=1)  # a minute's last instant: spans are closed ranges

COLUMNS = (
    "robot_id minute readings first_ts last_ts longest_step_s n_rows axes_stored axes_with_values axis_n_rows "
    "axis_n_values axis_n_zero axis_sum_amps axis_sum_sq_amps axis_min_amps axis_max_amps axis_max_active_amps "
    "axis_peak_ts"
).split()
STORED = text(
    f"SELECT {', '.join(COLUMNS)} FROM open_minute WHERE (robot_id, minute) IN "
    "(SELECT * FROM unnest(CAST(:robots AS text[]), CAST(:minutes AS timestamptz[])))"
)
# The rows as one JSON parameter (``json``, not ``jsonb``: a number's text goes to float8's own input, so a -0.0
# stays -0.0; msgspec writes each double in the fewest digits that read back exact, and the times as RFC 3339):
# ~100 rows of nine arrays as one value to parse, not 1,800 parameters.
WRITE = text(
    f"INSERT INTO open_minute ({', '.join(COLUMNS)}) SELECT {', '.join(COLUMNS)} "
    "FROM json_populate_recordset(NULL::open_minute, CAST(:rows AS json)) ORDER BY robot_id, minute "
    "ON CONFLICT (robot_id, minute) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[2:])
)
RAW = text(
    "SELECT r.robot_id, r.ts, r.axes, r.amps FROM unnest(CAST(:robots AS text[]), CAST(:lows AS timestamptz[]), "
    "CAST(:highs AS timestamptz[])) AS s(robot_id, low, high) CROSS JOIN LATERAL (SELECT * FROM readings r "
    "WHERE r.robot_id = s.robot_id AND r.ts >= s.low AND r.ts <= s.high) r ORDER BY r.robot_id, r.ts"
)
DELETE_FOLDED = text(
    "DELETE FROM open_minute o USING unnest(CAST(:robots AS text[]), CAST(:untils AS timestamptz[])) "
    "AS v(robot_id, until) WHERE o.robot_id = v.robot_id AND o.minute < v.until"
)
DELETE_ALL_FOLDED = text(
    "DELETE FROM open_minute o USING rollup_progress p WHERE o.robot_id = p.robot_id AND o.minute < p.folded_until"
)


class OpenMinute:
    """One robot's minute as ``open_minute`` holds it, carried on reading by reading (``add``, in time order) with
    the aggregates' own rules: a sum starts at its first value (not 0.0: a -0.0 stays), and a minimum or maximum
    takes the new value on a tie, as float8smaller / float8larger do; the peak's time stays the earlier on a tie,
    as the fold's greatest ``[amps, -epoch]`` keeps it. Element N - 1 of each list is axis N."""

    def __init__(self, robot_id: str, minute: datetime, stored: dict | None = None) -> None:
        self.robot_id, self.minute = robot_id, minute
        if stored is None:
            self.readings, self.first_ts, self.last_ts, self.longest_step_s = 0, None, None, 0.0
            self.n_rows, self.n_values, self.n_zero = [], [], []
            self.sums, self.sums_sq, self.mins, self.maxs, self.max_active, self.peak_ts = [], [], [], [], [], []
        else:
            self.readings, self.first_ts, self.last_ts = stored["readings"], stored["first_ts"], stored["last_ts"]
            self.longest_step_s = stored["longest_step_s"]
            self.n_rows, self.n_values = list(stored["axis_n_rows"]), list(stored["axis_n_values"])
            self.n_zero, self.sums = list(stored["axis_n_zero"]), list(stored["axis_sum_amps"])
            self.sums_sq, self.mins = list(stored["axis_sum_sq_amps"]), list(stored["axis_min_amps"])
            self.maxs, self.max_active = list(stored["axis_max_amps"]), list(stored["axis_max_active_amps"])
            self.peak_ts = list(stored["axis_peak_ts"])

    def add(self, ts: datetime, axes: int, amps: list) -> None:
        """One reading, later than every one added before."""
        if self.last_ts is not None:
            self.longest_step_s = max(self.longest_step_s, (ts - self.last_ts) / _SECOND)
        else:
            self.first_ts = ts
        self.readings += 1
        self.last_ts = ts
        if len(self.n_rows) < len(amps):
            grow = len(amps) - len(self.n_rows)
            for counts in (self.n_rows, self.n_values, self.n_zero):
                counts.extend([0] * grow)
            for values in (self.sums, self.sums_sq, self.mins, self.maxs, self.max_active, self.peak_ts):
                values.extend([None] * grow)
        for i, value in enumerate(amps):
            if not axes >> (i + 1) & 1:
                continue
            self.n_rows[i] += 1
            if value is None:
                continue
            self.n_values[i] += 1
            square = value * value
            if self.sums[i] is None:
                self.sums[i], self.sums_sq[i], self.mins[i], self.maxs[i], self.peak_ts[i] = (
                    value,
                    square,
                    value,
                    value,
                    ts,
                )
            else:
                self.sums[i] += value
                self.sums_sq[i] += square
                if not self.mins[i] < value:
                    self.mins[i] = value
                if value > self.maxs[i]:
                    self.peak_ts[i] = ts
                if not self.maxs[i] > value:
                    self.maxs[i] = value
            if value == 0:
                self.n_zero[i] += 1
            elif self.max_active[i] is None or not self.max_active[i] > value:
                self.max_active[i] = value

    def as_json(self) -> dict:
        """The row as ``WRITE`` takes it (msgspec writes the times)."""
        top = max((i + 1 for i, n in enumerate(self.n_rows) if n), default=0)  # up to the last axis with rows
        stored = sum(1 << (i + 1) for i in range(top) if self.n_rows[i])
        with_values = sum(1 << (i + 1) for i in range(top) if self.n_values[i])
        return {
            "robot_id": self.robot_id,
            "minute": self.minute,
            "readings": self.readings,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "longest_step_s": self.longest_step_s,
            "n_rows": sum(self.n_rows),
            "axes_stored": stored,
            "axes_with_values": with_values,
            "axis_n_rows": self.n_rows[:top],
            "axis_n_values": self.n_values[:top],
            "axis_n_zero": self.n_zero[:top],
            "axis_sum_amps": self.sums[:top],
            "axis_sum_sq_amps": self.sums_sq[:top],
            "axis_min_amps": self.mins[:top],
            "axis_max_amps": self.maxs[:top],
            "axis_max_active_amps": self.max_active[:top],
            "axis_peak_ts": self.peak_ts[:top],
        }


_SECOND = timedelta(seconds=1)  # a step in seconds: integer microseconds / 1e6, rounded once, as the fold's


def keep(
    conn: Connection,
    minutes: dict[str, set[datetime]],
    folded_until: dict[str, datetime],
    wide: list[tuple] | None,
) -> None:
    """Bring the open rows up to date with readings just stored: of each robot, its ``minutes`` at or after its
    ``folded_until``. ``wide``: the readings themselves, ``(robot_id, ts, axes, amps)``, when they are the only
    stored rows of their spans (None: every such minute is built again from its raw rows)."""
    wanted = sorted(
        (robot, minute)
        for robot, robot_minutes in minutes.items()
        for minute in robot_minutes
        if minute >= folded_until[robot]
    )
    if not wanted:
        return
    rows, redo = {}, wanted
    if wide is not None:
        new = _by_minute(r for r in wide if floor_minute(r[1]) >= folded_until[r[0]])
        params = {"robots": [r for r, _ in wanted], "minutes": [m for _, m in wanted]}
        stored = {(s["robot_id"], s["minute"]): s for s in conn.execute(STORED, params).mappings()}
        redo = []
        for key, readings in new.items():
            row = stored.get(key)
            if row is not None and not row["last_ts"] < readings[0][1]:
                redo.append(key)  # a reading before the row's last one
                continue
            rows[key] = minute = OpenMinute(*key, row)
            for _, ts, axes, amps in readings:
                minute.add(ts, axes, amps)
    if redo:
        params = {"robots": [r for r, _ in redo], "lows": [m for _, m in redo], "highs": [m + _LAST for _, m in redo]}
        for key, readings in _by_minute(conn.execute(RAW, params).tuples()).items():
            rows[key] = minute = OpenMinute(*key)
            for _, ts, axes, amps in readings:
                minute.add(ts, axes, amps)
    if rows:
        conn.execute(WRITE, {"rows": encode([rows[key].as_json() for key in sorted(rows)]).decode()})


def _by_minute(wide: Iterable[tuple]) -> dict[tuple[str, datetime], list[tuple]]:
    """``(robot_id, ts, axes, amps)`` readings by robot and minute, each minute's in time order."""
    grouped: dict[tuple[str, datetime], list[tuple]] = {}
    for reading in wide:
        grouped.setdefault((reading[0], floor_minute(reading[1])), []).append(reading)
    for readings in grouped.values():
        readings.sort(key=lambda r: r[1])
    return grouped


def delete_folded(conn: Connection, until: dict[str, datetime]) -> None:
    """The robots' open rows before their new ``folded_until``: those minutes are in readings_minute now."""
    robots = sorted(until)
    conn.execute(DELETE_FOLDED, {"robots": robots, "untils": [until[r] for r in robots]})


def delete_all_folded(conn: Connection) -> None:
    """Every open row before its robot's ``folded_until`` (after ``rollup_writer.rebuild``)."""
    conn.execute(DELETE_ALL_FOLDED)
