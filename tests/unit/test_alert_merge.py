"""One merge rule for an alert event's versions: ``Alert.merged_with``, which the dashboard and the alerts
topic read-back use, and consumer_db's SQL upsert must agree with, message by message or in one batch.
Run here on SQLite and by tests/integration/test_alert_merge_postgres.py on PostgreSQL."""

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from common.store.tables import alerts
from common.wire.schemas import Alert
from consumer_db.alert_store import alert_row, upsert_alerts
from tests.phrase_fixture import migrated_sqlite  # noqa: F401 - a fixture

T0 = datetime(2022, 10, 17, 12, tzinfo=UTC)
FIELDS = [c.name for c in alerts.columns if c.name != "updated_at"]


def moment(minutes: int | None) -> datetime | None:
    return None if minutes is None else T0 + timedelta(minutes=minutes)


small = st.none() | st.floats(min_value=-50, max_value=500, allow_nan=False).map(lambda x: round(x, 3))
versions = st.lists(
    st.builds(
        lambda severity, state, opened, closed, peak, threshold, score, who, when, outcome, note: Alert(
            event_id="r:2:zscore:e1",
            robot_id="r",
            axis=2,
            detector="zscore",
            severity=severity,
            state=state,
            opened_at=moment(opened),
            closed_at=moment(closed),
            peak_amps=peak,
            threshold=threshold,
            score=score,
            acknowledged_by=who,
            acknowledged_at=moment(when),
            ack_outcome=outcome,
            ack_note=note,
        ),
        st.sampled_from(["ALERT", "ERROR"]),
        st.sampled_from(["open", "closed"]),
        st.integers(0, 5),
        st.none() | st.integers(6, 60),
        small,
        small,
        small,
        st.sampled_from([None, "ana", "bo"]),
        st.none() | st.integers(1, 90),
        st.sampled_from([None, "real_fault", "false_alarm"]),
        st.sampled_from([None, "", "worn gear"]),
    ),
    min_size=1,
    max_size=6,
)


def folded(history: list[Alert]) -> Alert:
    held = history[0]
    for newer in history[1:]:
        held = held.merged_with(newer)
    return held


def stored(engine) -> dict:
    with engine.connect() as conn:
        row = conn.execute(select(alerts)).mappings().one()
    return {k: row[k] for k in FIELDS}


def check_sql_agrees_with_merged_with(engine, history: list[Alert]) -> None:
    expected = {k: alert_row(folded(history))[k] for k in FIELDS}
    for batches in ([[v] for v in history], [history]):  # one message per transaction, then all in one
        with engine.begin() as conn:
            conn.execute(delete(alerts))
        for batch in batches:
            with engine.begin() as conn:
                upsert_alerts(conn, batch)
        assert stored(engine) == expected, f"{len(batches)} transaction(s)"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=versions)
def test_the_sqlite_upsert_agrees_with_merged_with(migrated_sqlite, history):
    check_sql_agrees_with_merged_with(migrated_sqlite, history)


def test_merged_with_keeps_what_must_not_go_back():
    opened = Alert(
        event_id="e", robot_id="r", axis=1, detector="stuck", severity="ERROR", state="open", opened_at=T0,
        peak_amps=9.0, acknowledged_by="ana", acknowledged_at=moment(1), ack_outcome="real_fault", ack_note="gear",
    )  # fmt: skip
    later = opened.model_copy(
        update={"severity": "ALERT", "state": "closed", "closed_at": moment(9), "opened_at": moment(3)}
        | {"peak_amps": 2.0, "acknowledged_by": None, "acknowledged_at": None, "ack_outcome": None, "ack_note": None}
    )
    merged = opened.merged_with(later)
    assert (merged.severity, merged.peak_amps, merged.opened_at) == ("ERROR", 9.0, T0)
    assert (merged.state, merged.closed_at) == ("closed", moment(9))
    assert (merged.acknowledged_by, merged.acknowledged_at) == ("ana", moment(1))
    assert (merged.ack_outcome, merged.ack_note) == ("real_fault", "gear")
