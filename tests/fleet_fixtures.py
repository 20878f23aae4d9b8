"""A small fleet's health, written through the services' own write paths (``seed_axes``, ``store_health``,
``upsert_alerts``) for the Fleet tab's tests: one robot worn on axis 3 (crossing in a few days), one due
this month on axis 5, one healthy, one still learning; hourly cycles over ``DAYS`` days, a forecast per
axis at the end, alerts with and without an acknowledgement outcome, and the maintenance log: an entry
logged on its own (worn axis) and an acknowledgement "part replaced" (axis due this month), which is both an
acknowledged alert and a log entry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from common.store.joint_health import store_health
from common.store.maintenance import store_entries
from common.store.tables import seed_axes
from common.wire.schemas import (
    AckOutcome,
    Alert,
    AlertState,
    AxisForecast,
    CycleAxis,
    HealthEvent,
    MaintenanceAction,
    MaintenanceEntry,
    Severity,
)
from consumer_db.alert_store import upsert_alerts

DAYS = 35
END = datetime(2026, 2, 5, tzinfo=UTC)  # the forecasts' time: the fleet's "now"
START = END - timedelta(days=DAYS)
LIMIT = 0.30
WORN, DUE_THIS_MONTH, HEALTHY, LEARNING = "r-worn", "r-month", "r-healthy", "r-learning"
WORN_AXIS, MONTH_AXIS = 3, 5
SHOWN_AXES = (1, 3, 5)  # axes with cycles (the others have no health rows: a small fixture)
NOTE = "<b>grease</b> & bearing"
LOG_NOTE = "<i>lubricated</i> & checked by hand"  # a log entry's note (no alert)
REPLACED_NOTE = "gearbox replaced"
REPLACED_AT = END - timedelta(days=1)  # the acknowledgement "part replaced" of alert m-1


def _deviation(robot: str, axis: int, t: datetime) -> float:
    u = (t - START) / (END - START)
    if (robot, axis) == (WORN, WORN_AXIS):
        return 0.02 + 0.23 * u  # 0.25 at the end: near the limit
    if (robot, axis) == (DUE_THIS_MONTH, MONTH_AXIS):
        return 0.01 + 0.14 * u
    return 0.01


def health_events() -> list[HealthEvent]:
    events = []
    for robot in (WORN, DUE_THIS_MONTH, HEALTHY):
        for h in range(DAYS * 24):
            start = START + timedelta(hours=h, minutes=10)
            axes = [
                CycleAxis(
                    axis=a,
                    energy_as=100.0,
                    energy_a2s=1000.0,
                    peak_amps=20.0,
                    rms_amps=10.0,
                    covered_s=60.0,
                    deviation=_deviation(robot, a, start),
                )
                for a in SHOWN_AXES
            ]
            events.append(
                HealthEvent(robot_id=robot, kind="cycle", start=start, end=start + timedelta(seconds=60), axes=axes)
            )
    forecasts = {
        WORN: [(WORN_AXIS, 0.25, 0.012, 3.5, 2.0, 6.0)],
        DUE_THIS_MONTH: [(MONTH_AXIS, 0.15, 0.004, 18.0, 12.0, 30.0)],
        HEALTHY: [],
    }
    for robot, special in forecasts.items():
        per_axis = {a: (a, 0.01, 0.0, None, None, None) for a in SHOWN_AXES} | {s[0]: s for s in special}
        events.append(
            HealthEvent(
                robot_id=robot,
                kind="forecast",
                start=END,
                forecasts=[
                    AxisForecast(
                        axis=a, level=lv, slope_per_day=sl, limit=LIMIT, days_left=d, low_days=lo, high_days=hi
                    )
                    for a, lv, sl, d, lo, hi in per_axis.values()
                ],
            )
        )
    return events


def _alert(event_id, robot, axis, detector, opened, *, state=AlertState.CLOSED, ack=None, outcome=None, note=None):
    return Alert(
        event_id=event_id,
        robot_id=robot,
        axis=axis,
        detector=detector,
        severity=Severity.ALERT,
        state=state,
        opened_at=opened,
        closed_at=None if state == AlertState.OPEN else opened + timedelta(minutes=5),
        peak_amps=30.0,
        threshold=25.0,
        score=4.0,
        acknowledged_by="maria" if ack else None,
        acknowledged_at=ack,
        ack_outcome=outcome,
        ack_note=note,
    )


def fleet_alerts() -> list[Alert]:
    day = timedelta(days=1)
    return [
        _alert("due-1", WORN, WORN_AXIS, "maintenance_due", END - 2 * day, state=AlertState.OPEN),
        _alert(
            "z-1",
            WORN,
            WORN_AXIS,
            "zscore",
            END - 20 * day,
            ack=END - 19 * day,
            outcome=AckOutcome.REAL_FAULT,
            note=NOTE,
        ),  # fmt: skip
        _alert("z-2", WORN, WORN_AXIS, "zscore", END - 10 * day, ack=END - 9 * day),  # acknowledged, no outcome
        _alert("z-3", WORN, 1, "zscore", END - 5 * day, ack=END - 4 * day, outcome=AckOutcome.FALSE_ALARM),
        _alert("z-4", HEALTHY, 1, "zscore", END - 3 * day, ack=END - 3 * day, outcome=AckOutcome.FALSE_ALARM),
        _alert(
            "r-1",
            DUE_THIS_MONTH,
            MONTH_AXIS,
            "residual",
            END - 8 * day,
            ack=END - 7 * day,
            outcome=AckOutcome.INSPECTED_OK,
        ),  # fmt: skip
        _alert("r-2", HEALTHY, 2, "residual", END - 6 * day),  # not acknowledged: counts nowhere
        _alert(
            "m-1",
            DUE_THIS_MONTH,
            MONTH_AXIS,
            "maintenance_due",
            END - 3 * day,
            ack=REPLACED_AT,
            outcome=AckOutcome.PART_REPLACED,
            note=REPLACED_NOTE,
        ),  # fmt: skip
    ]


def fleet_log() -> list[MaintenanceEntry]:
    """A lubrication logged on the worn axis, and the log entry of m-1's acknowledgement (as the API logs it)."""
    logged = MaintenanceEntry(
        entry_id="log-1",
        robot_id=WORN,
        axis=WORN_AXIS,
        at=END - timedelta(days=15),
        action=MaintenanceAction.LUBRICATED,
        note=LOG_NOTE,
        user_name="jonas",
    )
    replaced = MaintenanceEntry.new(
        DUE_THIS_MONTH, MONTH_AXIS, MaintenanceAction.PART_REPLACED, "maria", REPLACED_AT, REPLACED_NOTE, "m-1"
    )
    return [logged, replaced]


def seed_fleet(engine: Engine) -> None:
    with engine.begin() as conn:
        seed_axes(conn, robot_ids=[WORN, DUE_THIS_MONTH, HEALTHY, LEARNING], axes=range(1, 15))
        store_health(conn, health_events())
        upsert_alerts(conn, fleet_alerts())
        store_entries(conn, fleet_log())
