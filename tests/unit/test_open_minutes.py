"""An open minute's row (``consumer_db.open_minutes.OpenMinute``) carried on from its stored form is the row
built from all its readings in one go: the writer may split a minute's readings over any number of writes."""

import random
from datetime import UTC, datetime, timedelta

from consumer_db.open_minutes import OpenMinute

MINUTE = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


def readings(seed: int, count: int) -> list[tuple]:
    """``(ts, axes, amps)`` in time order: axes 1-8 with values (some 0, a few -0.0), 9-12 stored as NULL, and
    axis 13 only on some readings, so the arrays grow from one write to the next."""
    rng = random.Random(seed)
    out = []
    for k in range(count):
        amps = [rng.choice([0.0, -0.0, round(rng.uniform(-3, 9), 3), 1.5]) for _ in range(8)] + [None] * 4
        axes = sum(1 << axis for axis in range(1, 13))
        if k % 3 == 2:
            amps.append(round(rng.uniform(0, 2), 3))
            axes |= 1 << 13
        out.append((MINUTE + timedelta(seconds=2 * k, microseconds=rng.randrange(1000)), axes, amps))
    return out


def built(parts: list[list[tuple]]) -> dict:
    row = None
    for part in parts:
        minute = OpenMinute("R1", MINUTE, row)
        for ts, axes, amps in part:
            minute.add(ts, axes, amps)
        row = minute.as_json()
    return row


def test_a_minute_split_over_writes_is_the_minute_built_at_once():
    every = readings(3, 30)
    whole = built([every])
    for cut in ([1], [2, 3], [10, 11, 29], list(range(1, 30))):
        parts = [every[a:b] for a, b in zip([0, *cut], [*cut, len(every)], strict=True)]
        assert repr(built(parts)) == repr(whole), cut  # repr: -0.0 and 0.0 told apart, sums to the last bit


def test_the_row_holds_the_minutes_statistics():
    every = readings(5, 12)
    row = built([every[:4], every[4:]])
    values = [amps[0] for _, _, amps in every]
    total = values[0]
    for value in values[1:]:
        total += value  # in time order, as the fold adds them
    assert row["readings"] == 12 and row["first_ts"] == every[0][0] and row["last_ts"] == every[-1][0]
    assert row["axis_n_rows"][0] == 12 and row["axis_n_values"][0] == 12 and row["axis_n_rows"][8] == 12
    assert row["axis_n_values"][8] == 0 and row["axis_sum_amps"][8] is None
    assert row["axis_n_rows"][12] == 4 and len(row["axis_n_rows"]) == 13
    assert row["axis_sum_amps"][0] == total
    assert row["axis_n_zero"][0] == sum(1 for v in values if v == 0)
    assert row["axis_max_amps"][0] == max(values)
    assert row["axis_peak_ts"][0] == min(ts for ts, _, amps in every if amps[0] == max(values))
    assert row["axes_stored"] == sum(1 << a for a in range(1, 14))
    assert row["axes_with_values"] == sum(1 << a for a in (*range(1, 9), 13))
    steps = [(b[0] - a[0]).total_seconds() for a, b in zip(every, every[1:], strict=False)]
    assert row["longest_step_s"] == max(steps)
