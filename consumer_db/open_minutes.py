"""The writer of ``open_minute`` (PostgreSQL): each robot's minutes not folded yet, one row per robot and minute,
kept up to date by the writer that stores the readings, in the same transaction (``rollup_writer.add``).

Readings that are the only rows of their robot's span (``NewRows.fresh``: the sink's and the ingest's usual
write) are merged into their minutes' rows: counts and sums added, minima and maxima taken, element by element
of the per-axis arrays. A merge is exact only for readings after the row's last one (the longest step between
two readings needs the neighbours), so a row whose ``last_ts`` is not before the new readings' first is
recomputed from its minute's raw rows instead, as is every minute of a write that went through the staging
table (a redelivery, a reading stored in part). A fold deletes the rows of the minutes it folds
(``delete_folded``), in its own transaction.

Costs (docs/benchmarks.md, section 3): one row per robot and minute is ~100 upserts a 100-robot tick, measured
at 7.5-11 ms of server CPU, where a row per axis (1,400) cost 43-66 ms.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, text

MINUTE = timedelta(minutes=1)

# The per-axis statistics of readings' rows in ``span`` (``ts`` within ``[low, high]``), as readings_minute's
# writers compute them (``common.store.rollup.readings_minute_rollup_of``), gathered per robot and minute into
# arrays indexed by axis, and the stamps' columns (reading_stamps_minute's) beside them.
OF_SPANS = """
WITH span AS (
  SELECT * FROM unnest(CAST(:robots AS text[]), CAST(:lows AS timestamptz[]), CAST(:highs AS timestamptz[]))
    AS s(robot_id, low, high)
), reading AS (
  SELECT r.robot_id, date_trunc('minute', r.ts) AS minute, r.ts, r.axes, r.amps
  FROM span CROSS JOIN LATERAL (
    SELECT * FROM readings r WHERE r.robot_id = span.robot_id AND r.ts >= span.low AND r.ts <= span.high OFFSET 0
  ) r
), axis AS (
  SELECT r.robot_id, r.minute, CAST(e.axis_id AS integer) AS axis_id, count(*) AS n_rows,
         count(e.amps) AS n_values, sum(CASE WHEN e.amps = 0 THEN 1 ELSE 0 END) AS n_zero, sum(e.amps) AS sum_amps,
         sum(e.amps * e.amps) AS sum_sq_amps, min(e.amps) AS min_amps, max(e.amps) AS max_amps,
         max(CASE WHEN e.amps <> 0 THEN e.amps END) AS max_active_amps,
         to_timestamp(-(max(CASE WHEN e.amps IS NOT NULL
                                 THEN ARRAY[e.amps, -date_part('epoch', r.ts)] END))[2]) AS peak_ts
  FROM reading r CROSS JOIN LATERAL unnest(r.amps) WITH ORDINALITY AS e(amps, axis_id)
  WHERE (r.axes >> CAST(e.axis_id AS integer)) & 1 <> 0
  GROUP BY r.robot_id, r.minute, e.axis_id
), arrays AS (
  SELECT k.robot_id, k.minute,
         array_agg(coalesce(a.n_rows, 0) ORDER BY g.i) AS axis_n_rows,
         array_agg(coalesce(a.n_values, 0) ORDER BY g.i) AS axis_n_values,
         array_agg(coalesce(a.n_zero, 0) ORDER BY g.i) AS axis_n_zero,
         array_agg(a.sum_amps ORDER BY g.i) AS axis_sum_amps,
         array_agg(a.sum_sq_amps ORDER BY g.i) AS axis_sum_sq_amps,
         array_agg(a.min_amps ORDER BY g.i) AS axis_min_amps,
         array_agg(a.max_amps ORDER BY g.i) AS axis_max_amps,
         array_agg(a.max_active_amps ORDER BY g.i) AS axis_max_active_amps,
         array_agg(a.peak_ts ORDER BY g.i) AS axis_peak_ts,
         sum(coalesce(a.n_rows, 0)) AS n_rows,
         coalesce(bit_or(CASE WHEN a.n_rows > 0 THEN CAST(1 AS bigint) << g.i END), 0) AS axes_stored,
         coalesce(bit_or(CASE WHEN a.n_values > 0 THEN CAST(1 AS bigint) << g.i END), 0) AS axes_with_values
  FROM (SELECT robot_id, minute, max(axis_id) AS top FROM axis GROUP BY robot_id, minute) k
  CROSS JOIN LATERAL generate_series(1, k.top) g(i)
  LEFT JOIN axis a ON a.robot_id = k.robot_id AND a.minute = k.minute AND a.axis_id = g.i
  GROUP BY k.robot_id, k.minute
), step AS (
  SELECT robot_id, minute, ts,
         date_part('epoch', ts - lag(ts) OVER (PARTITION BY robot_id, minute ORDER BY ts)) AS step
  FROM reading
), stamps AS (
  SELECT robot_id, minute, count(*) AS readings, min(ts) AS first_ts, max(ts) AS last_ts,
         coalesce(max(step), 0.0) AS longest_step_s
  FROM step GROUP BY robot_id, minute
)
INSERT INTO open_minute AS o (robot_id, minute, readings, first_ts, last_ts, longest_step_s, n_rows, axes_stored,
  axes_with_values, axis_n_rows, axis_n_values, axis_n_zero, axis_sum_amps, axis_sum_sq_amps, axis_min_amps,
  axis_max_amps, axis_max_active_amps, axis_peak_ts)
SELECT t.robot_id, t.minute, t.readings, t.first_ts, t.last_ts, t.longest_step_s, coalesce(a.n_rows, 0),
       coalesce(a.axes_stored, 0), coalesce(a.axes_with_values, 0), coalesce(a.axis_n_rows, '{}'),
       coalesce(a.axis_n_values, '{}'), coalesce(a.axis_n_zero, '{}'), coalesce(a.axis_sum_amps, '{}'),
       coalesce(a.axis_sum_sq_amps, '{}'), coalesce(a.axis_min_amps, '{}'), coalesce(a.axis_max_amps, '{}'),
       coalesce(a.axis_max_active_amps, '{}'), coalesce(a.axis_peak_ts, '{}')
FROM stamps t LEFT JOIN arrays a ON a.robot_id = t.robot_id AND a.minute = t.minute
ORDER BY t.robot_id, t.minute
"""


# Each per-axis array merged element by element (the shorter one padded with NULLs): one subquery per row for
# all nine, not one each (nine unnests and sorts per row were most of a tick's merge), its elements aggregated in
# the order the one function scan of ``unnest`` gives them, the arrays' own (an ``ORDER BY`` in each aggregate
# sorted them nine times over: half the statement's time). ``o<N>``/``n<N>``: the stored and the new element of
# the Nth array of ``AXIS_ARRAYS``.
AXIS_ARRAYS = (
    "axis_n_rows axis_n_values axis_n_zero axis_sum_amps axis_sum_sq_amps axis_min_amps axis_max_amps "
    "axis_max_active_amps axis_peak_ts"
).split()
ADDED = "coalesce(o{0}, 0) + coalesce(n{0}, 0)"
SUMMED = "CASE WHEN o{0} IS NULL THEN n{0} WHEN n{0} IS NULL THEN o{0} ELSE o{0} + n{0} END"
# The peak's time (array 8): the earlier one on a tie, as the fold's greatest [amps, -epoch] takes it (array 6: max).
PEAK = "CASE WHEN n6 IS NULL OR o6 > n6 THEN o8 WHEN o6 IS NULL OR n6 > o6 THEN n8 ELSE least(o8, n8) END"
MERGED = (
    ADDED,
    ADDED,
    ADDED,
    SUMMED,
    SUMMED,
    "least(o{0}, n{0})",
    "greatest(o{0}, n{0})",
    "greatest(o{0}, n{0})",
    PEAK,
)
ELEMENTWISE = (
    f"({', '.join(AXIS_ARRAYS)}) = (SELECT "
    + ", ".join(f"array_agg({merged.format(k)})" for k, merged in enumerate(MERGED))
    + f" FROM unnest({', '.join(f'o.{c}, excluded.{c}' for c in AXIS_ARRAYS)}) AS u("
    + ", ".join(f"o{k}, n{k}" for k in range(len(AXIS_ARRAYS)))
    + "))"
)
MERGE = (
    OF_SPANS
    + """
ON CONFLICT (robot_id, minute) DO UPDATE SET
  readings = o.readings + excluded.readings,
  first_ts = o.first_ts,
  last_ts = excluded.last_ts,
  longest_step_s = greatest(o.longest_step_s, excluded.longest_step_s,
                            date_part('epoch', excluded.first_ts - o.last_ts)),
  n_rows = o.n_rows + excluded.n_rows,
  axes_stored = o.axes_stored | excluded.axes_stored,
  axes_with_values = o.axes_with_values | excluded.axes_with_values,
  """
    + ELEMENTWISE
    + "\nWHERE o.last_ts < excluded.first_ts\nRETURNING robot_id, minute"
)
# The minutes' rows afresh from all their raw rows.
REPLACE = (
    OF_SPANS
    + "ON CONFLICT (robot_id, minute) DO UPDATE SET\n  "
    + ",\n  ".join(
        f"{c} = excluded.{c}"
        for c in (
            "readings first_ts last_ts longest_step_s n_rows axes_stored axes_with_values axis_n_rows axis_n_values "
            "axis_n_zero axis_sum_amps axis_sum_sq_amps axis_min_amps axis_max_amps axis_max_active_amps axis_peak_ts"
        ).split()
    )
)
DELETE_FOLDED = text(
    "DELETE FROM open_minute o USING unnest(CAST(:robots AS text[]), CAST(:untils AS timestamptz[])) "
    "AS v(robot_id, until) WHERE o.robot_id = v.robot_id AND o.minute < v.until"
)
DELETE_ALL_FOLDED = text(
    "DELETE FROM open_minute o USING rollup_progress p WHERE o.robot_id = p.robot_id AND o.minute < p.folded_until"
)


def keep(
    conn: Connection,
    spans: dict[str, list[datetime]],
    minutes: dict[str, set[datetime]],
    folded_until: dict[str, datetime],
    *,
    fresh: bool,
) -> None:
    """Bring the open rows up to date with readings just stored: of each robot, those of its ``spans``
    (``[first, last]``, in ``minutes``) at or after its ``folded_until``. ``fresh``: they are the only rows of
    their spans (merged); otherwise their minutes are recomputed."""
    if fresh:
        merged = {
            robot: [max(span[0], folded_until[robot]), span[1]]
            for robot, span in spans.items()
            if span[1] >= folded_until[robot]
        }
        if not merged:
            return
        done = set(conn.execute(text(MERGE), _params(merged)).tuples())
        wanted = {(robot, minute) for robot in merged for minute in minutes[robot] if minute >= folded_until[robot]}
        redo = sorted(wanted - done)  # rows the new readings do not all come after: recomputed
    else:
        redo = sorted(
            (robot, minute)
            for robot, robot_minutes in minutes.items()
            for minute in robot_minutes
            if minute >= folded_until[robot]
        )
    if redo:
        whole = {"robots": [r for r, _ in redo], "lows": [m for _, m in redo], "highs": [m + _LAST for _, m in redo]}
        conn.execute(text(REPLACE), whole)


_LAST = MINUTE - timedelta(microseconds=1)  # a minute's last instant: spans are closed ranges


def _params(spans: dict[str, list[datetime]]) -> dict[str, list]:
    robots = sorted(spans)
    return {"robots": robots, "lows": [spans[r][0] for r in robots], "highs": [spans[r][1] for r in robots]}


def delete_folded(conn: Connection, until: dict[str, datetime]) -> None:
    """The robots' open rows before their new ``folded_until``: those minutes are in readings_minute now."""
    robots = sorted(until)
    conn.execute(DELETE_FOLDED, {"robots": robots, "untils": [until[r] for r in robots]})


def delete_all_folded(conn: Connection) -> None:
    """Every open row before its robot's ``folded_until`` (after ``rollup_writer.rebuild``)."""
    conn.execute(DELETE_ALL_FOLDED)
