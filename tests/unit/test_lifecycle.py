"""The alert lifecycle: open, escalate, hold-off close, one open event per key, deterministic ids."""

import pickle
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from common.wire.schemas import Alert, AlertState, Severity
from consumer_alerts.detectors import Finding
from consumer_alerts.lifecycle import Lifecycle, OpenCount, event_id, lifecycle_for

T0 = datetime(2022, 10, 18, 8, 0, tzinfo=UTC)
ALERT = Finding(Severity.ALERT, 12.0, 0.5, 0.2)
ERROR = Finding(Severity.ERROR, 40.0, 25.0, 15.0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_opens_escalates_and_closes_after_the_holdoff_under_one_id():
    life = Lifecycle("r1", 2, "residual", holdoff_s=60.0)
    opened = life.step(at(0), ALERT, True)
    assert opened.state is AlertState.OPEN and opened.severity is Severity.ALERT
    assert opened.event_id == event_id("r1", 2, "residual", at(0)) == "r1:2:residual:2022-10-18T08:00:00.000Z"
    assert life.step(at(2), ALERT, True) is None  # nothing changed: no message
    escalated = life.step(at(4), ERROR, True)
    assert escalated.severity is Severity.ERROR and escalated.threshold == 15.0 and escalated.peak_amps == 40.0
    assert escalated.event_id == opened.event_id
    assert life.step(at(6), ALERT, True) is None  # never back down to ALERT
    assert life.step(at(8), None, True) is None  # quiet from t=8
    assert life.step(at(67), None, True) is None
    closed = life.step(at(68), None, True)
    assert closed.state is AlertState.CLOSED and closed.closed_at == at(8) and closed.duration_s == 8.0
    assert closed.severity is Severity.ERROR and closed.event_id == opened.event_id
    assert life.event is None


def test_a_finding_during_the_holdoff_keeps_the_event_open():
    life = Lifecycle("r1", 2, "zscore", holdoff_s=60.0)
    life.step(at(0), ALERT, True)
    life.step(at(10), None, True)
    assert life.step(at(50), ALERT, True) is None
    assert life.step(at(100), None, True) is None  # the count starts again at 100
    assert life.step(at(160), None, True).closed_at == at(100)


def test_idle_readings_do_not_start_the_holdoff_but_time_runs_after_a_quiet_one():
    life = Lifecycle("r1", 2, "zscore", holdoff_s=60.0)
    life.step(at(0), ALERT, True)
    assert life.step(at(500), None, False) is None  # idle for minutes: no evidence that it cleared
    life.step(at(502), None, True)  # observed quiet
    assert life.step(at(600), None, False).closed_at == at(502)  # the robot idles, the hold-off runs out


def test_a_rest_right_after_the_last_finding_counts_once_a_judged_row_is_quiet():
    # the robot stops with the overload (the rule fired up to its last working row): the rest is when the trouble
    # ended if the first working row after it is quiet; the event closes as of the rest's start
    life = Lifecycle("r1", 2, "residual", holdoff_s=60.0)
    life.step(at(0), ALERT, True)
    assert life.step(at(2), None, False, resting=True) is None
    assert life.step(at(400), None, False, resting=True) is None  # a rest alone closes nothing
    assert life.step(at(402), None, True).closed_at == at(2)
    # a short rest counts towards the hold-off the working rows after it finish
    life.step(at(500), ALERT, True)
    life.step(at(502), None, False, resting=True)
    assert life.step(at(530), None, True) is None
    assert life.step(at(562), None, True).closed_at == at(502)


def test_a_finding_after_a_rest_keeps_the_same_event():
    # a fault that goes on through a rest is one event, however long the rest (up to a stoppage)
    life = Lifecycle("r1", 2, "residual", holdoff_s=60.0)
    opened = life.step(at(0), ALERT, True)
    life.step(at(2), None, False, resting=True)
    assert life.step(at(400), ALERT, True) is None and life.event.opened_at == opened.opened_at
    assert life.step(at(402), None, True) is None
    assert life.step(at(462), None, True).closed_at == at(402)


def test_peak_growth_is_republished_only_in_steps():
    life = Lifecycle("r1", 2, "residual", holdoff_s=60.0)
    life.step(at(0), Finding(Severity.ALERT, 10.0, 0.3, 0.2), True)
    assert life.step(at(2), Finding(Severity.ALERT, 10.5, 0.3, 0.2), True) is None
    bigger = life.step(at(4), Finding(Severity.ALERT, 12.0, 0.4, 0.2), True)
    assert bigger.peak_amps == 12.0 and bigger.score == 0.4


def test_restore_continues_an_event_open_on_the_topic():
    sent = Alert(
        event_id=event_id("r1", 2, "residual", at(0)),
        robot_id="r1",
        axis=2,
        detector="residual",
        severity=Severity.ALERT,
        state=AlertState.OPEN,
        opened_at=at(0),
        peak_amps=12.0,
        threshold=0.2,
        score=0.3,
        acknowledged_by="ana",
        acknowledged_at=at(30),
    )
    life = Lifecycle("r1", 2, "residual", holdoff_s=60.0)
    life.restore(sent)
    assert life.step(at(100), ALERT, True) is None  # already open: no second OPEN
    closed = life.step(at(200), None, True) or life.step(at(260), None, True)
    assert closed.event_id == sent.event_id and closed.acknowledged_by == "ana"


steps = st.lists(st.tuples(st.integers(1, 90), st.sampled_from([None, ALERT, ERROR]), st.booleans()), max_size=200)


@settings(max_examples=200, deadline=None)
@given(steps)
def test_never_two_open_events_for_one_key(sequence):
    life = Lifecycle("r1", 3, "zscore", holdoff_s=60.0)
    now, open_id, seen_closed = 0, None, set()
    for gap, finding, observed in sequence:
        now += gap
        alert = life.step(at(now), finding, observed)
        if alert is None:
            continue
        if alert.state is AlertState.OPEN:
            assert open_id in (None, alert.event_id), "a second event opened while one was open"
            assert alert.event_id not in seen_closed
            open_id = alert.event_id
        else:
            assert alert.event_id == open_id and alert.closed_at >= alert.opened_at
            seen_closed.add(open_id)
            open_id = None
        assert (life.event is None) == (open_id is None)


def test_the_open_count_follows_every_change_of_its_lifecycles_events():
    count = OpenCount()
    high, low = (Lifecycle("r1", 2, kind, holdoff_s=60.0, count=count) for kind in ("level_high", "level_low"))
    high.step(at(0), ALERT, True)
    low.step(at(0), ALERT, True)
    assert count.open == 2
    high.step(at(0), ALERT, True)  # an update of an open event opens nothing
    assert count.open == 2
    high.step(at(2), None, True)
    high.step(at(62), None, True)  # the hold-off closes it
    assert high.event is None and count.open == 1
    taken_over = low.close(at(3))
    low.restore(taken_over)  # as after a restart, from the alerts topic
    assert count.open == 1
    low.event = None
    assert count.open == 0


def test_a_lifecycle_pickled_before_the_count_keeps_its_open_event():
    life = Lifecycle("r1", 2, "maintenance_due", holdoff_s=60.0)
    life.step(at(0), ALERT, True)
    state = dict(life.__dict__)
    state["event"] = state.pop("_event")  # how it was kept before: the health pipeline's state file
    del state["count"]
    old = Lifecycle.__new__(Lifecycle)
    old.__setstate__(state)
    assert old.event == life.event and old.count is None
    assert pickle.loads(pickle.dumps(old)).step(at(1), ERROR, True).severity is Severity.ERROR


def test_a_finding_goes_to_the_other_kinds_open_event_on_its_axis_only():
    high, low = (Lifecycle("r1", 0, kind, holdoff_s=60.0) for kind in ("cycle_high", "cycle_low"))
    assert lifecycle_for((high, low), "cycle_low", 3) is low  # nothing open: its own kind
    high.step(at(0), Finding(Severity.ALERT, 12.0, 0.5, 0.2, "cycle_high", 3), True)
    assert lifecycle_for((high, low), "cycle_low", 3) is high  # the episode's event on axis 3 takes it
    assert lifecycle_for((high, low), "cycle_low", 5) is low  # another axis: an event of its own
    low.step(at(1), Finding(Severity.ALERT, 2.0, 0.5, 0.2, "cycle_low", 5), True)
    assert lifecycle_for((high, low), "cycle_low", 3) is low  # its own kind's open event comes first
    assert lifecycle_for((high, low), "stuck", 3) is None
