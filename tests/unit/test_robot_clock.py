"""A robot's clock that leaps ahead and comes back (``common.wire.clock``), as consumer_alerts' engine, its health
pipeline's cycle splitter and the dashboard's feed follow it; and a reading's message key, which must be its
robot id (``ReadingPolicy.read_message``) for consumer_db, consumer_alerts and the dashboard alike."""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime, timedelta

import pytest
from bokeh.document import Document

from common.defaults import STOPPAGE_RESET_S
from common.errors import SchemaError
from common.wire.bus import InProcessBus, Message
from common.wire.clock import NO_LEAP, SET_BACK_RUN, before_first, comes_back, late, next_leap, next_silence
from common.wire.schemas import DEFAULT_POLICY, AlertState, Reading
from consumer_alerts.engine import DetectorEngine
from consumer_alerts.engine_state import load_robot, robot_snapshot
from consumer_alerts.health.cycles import CycleSplitter
from consumer_alerts.service import Intake, events_per_reading
from consumer_db.decode import Topics, decode
from dashboard.feed import LiveFeed
from dashboard.live import LiveView
from dashboard.settings import DashboardSettings
from tests.dashboard_support import reading as dashboard_reading

START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
DAY_AHEAD = timedelta(hours=23)  # inside READING_MAX_FUTURE_S (a day): such a reading passes the policy


def at(i: int) -> datetime:
    return START + timedelta(seconds=2 * i)


@pytest.mark.parametrize(
    ("ts", "expected"),
    [(50.0, True), (10.0, False), (1_000.0, False), (999.0 - STOPPAGE_RESET_S, True), (1_000.0 - 600, False)],
    ids=["inside the span", "before the leap", "at its end", "just over the bound", "at the bound"],
)
def test_a_reading_comes_back_inside_the_leap_and_more_than_the_bound_older(ts, expected):
    # the robot read at 10 s, then at 1,000 s (a leap), newest now 1,200 s
    newest = 1_000.0 if ts != 50.0 else 1_200.0
    assert comes_back((10.0, 1_000.0), newest, ts, STOPPAGE_RESET_S) is expected
    assert not comes_back(NO_LEAP, newest, ts, STOPPAGE_RESET_S)


def test_a_leap_is_a_step_over_the_bound_and_a_first_reading_leaps_from_the_beginning():
    kept = (1.0, 2_000.0)
    assert next_leap(kept, 10.0, 1_000.0, STOPPAGE_RESET_S) == (10.0, 1_000.0)
    assert next_leap(kept, 10.0, 10.0 + STOPPAGE_RESET_S, STOPPAGE_RESET_S) == kept  # a step at the bound
    assert next_leap(NO_LEAP, None, 5.0, STOPPAGE_RESET_S) == (-math.inf, 5.0)
    # nothing says a first reading came from ahead: a reading before it is no come-back by itself (a run is)
    first = (-math.inf, 1_000.0)
    assert not comes_back(first, 1_200.0, 50.0, STOPPAGE_RESET_S)
    assert before_first(first, 50.0) and not before_first(first, 1_000.0) and not before_first((10.0, 1_000.0), 50.0)


def normal(i: int, amps: float | None = None) -> Reading:
    value = amps if amps is not None else 40.0 if i >= 350 else 10 + (i % 7) * 0.1  # a fault from reading 350
    return Reading(robot_id="R", ts=at(i), currents={1: value})


def ahead(k: int) -> Reading:
    return DEFAULT_POLICY.check(
        Reading(
            robot_id="R",
            ts=datetime.now(UTC) + DAY_AHEAD + timedelta(seconds=2 * k),
            currents={1: 10.0 + (k % 3) * 0.1},
        )
    )


def fault_events(engine: DetectorEngine, stream) -> set[str]:
    out = [alert for reading in stream for alert in engine.process(reading)]
    return {a.detector for a in out if a.state is AlertState.OPEN and a.opened_at >= at(350) and a.axis == 1}


def test_a_clock_ahead_for_ten_readings_and_corrected_does_not_blind_its_robot(caplog):
    plain = [normal(i) for i in range(400)]
    leapt_for_ten = plain[:20] + [ahead(k) for k in range(10)] + plain[20:]
    # the corrected clock is followed at the SET_BACK_RUN-th reading back inside the leap: the run's earlier ones
    # are skipped, and the robot is judged on as without them (one reading back is no come-back by itself)
    expected = fault_events(DetectorEngine(), plain[:20] + plain[20 + SET_BACK_RUN - 1 :])
    assert expected
    engine = DetectorEngine()
    with caplog.at_level(logging.WARNING, logger="consumer_alerts.engine"):
        assert fault_events(engine, leapt_for_ten) == expected
    warned = [r.getMessage() for r in caplog.records if "ahead of its clock" in r.getMessage()]
    assert len(warned) == 1 and "robot 'R'" in warned[0] and START.strftime("%Y-%m-%d") in warned[0]
    # the robot is judged on from its corrected clock: its newest reading is the last one sent
    assert engine.robots["R"].last_ts == plain[-1].ts.timestamp()


def test_a_robot_whose_first_readings_come_from_ahead_is_judged_once_its_clock_comes_back():
    plain = [normal(i) for i in range(400)]
    expected = fault_events(DetectorEngine(), plain)
    engine = DetectorEngine()
    # the readings from ahead are judged too (the robot-level detector learns from them), but the fault is raised
    # by the axis's own detectors as without them; nothing says a first reading came from ahead, so its clock is
    # followed back as a clock set back, at the SET_BACK_RUN-th reading in a row (offline too: no redelivery falls
    # before a robot's first reading)
    assert fault_events(engine, [ahead(k) for k in range(10)] + plain) - {"multivariate"} == expected - {"multivariate"}
    assert engine.robots["R"].last_ts == plain[-1].ts.timestamp()
    saved = robot_snapshot(engine.robots["R"])
    assert saved["leap"] == [None, plain[SET_BACK_RUN - 1].ts.timestamp()]  # judged on as from a first reading
    fresh = DetectorEngine()
    fresh.process(ahead(0))
    restored = DetectorEngine()
    load_robot(restored, "R", robot_snapshot(fresh.robots["R"]))
    assert restored.robots["R"].leap == (-math.inf, fresh.robots["R"].last_ts)


@pytest.mark.parametrize("from_kafka", [True, False], ids=["from Kafka", "offline"])
def test_one_stray_reading_stamped_in_the_past_closes_nothing_on_a_robot_that_never_stopped(from_kafka, caplog):
    """A robot that has not stopped since the service first saw it: before, its first reading's span (from the
    beginning of time) took any older reading for its clock coming back from ahead, and one stray reading stamped
    days back closed its open fault events (old readings sent between live ones, at each one)."""
    engine = DetectorEngine()

    def judge(readings, first_offset: int) -> list:
        if from_kafka:
            return placed(engine, readings, first_offset)
        return [a for r in readings for a in engine.process(r)]

    feed = [normal(i) for i in range(460)]  # a fault on axis 1 from reading 350
    assert [a for a in judge(feed[:400], 0) if a.state is AlertState.OPEN and a.axis == 1]
    stray = normal(0, 10.0).model_copy(update={"ts": at(0) - timedelta(days=3)})
    old = [normal(i, 10.0).model_copy(update={"ts": at(i) - timedelta(days=2)}) for i in range(30)]
    with caplog.at_level(logging.WARNING, logger="consumer_alerts.engine"):
        assert judge([stray], 400) == []
        events = judge([r for pair in zip(old, feed[400:430], strict=True) for r in pair], 401)
        events += judge(feed[430:], 461)
    assert not [a for a in events if a.state is AlertState.CLOSED], "the fault's events stay open"
    assert "ahead of its clock" not in caplog.text and "clock went back" not in caplog.text
    assert engine.robots["R"].last_ts == feed[-1].ts.timestamp()


GAP = timedelta(hours=2)  # an outage: the robot's feed stops for two hours and resumes on its own clock


def after_gap(i: int) -> Reading:
    return normal(i).model_copy(update={"ts": at(i) + GAP})


def inside_gap(k: int) -> Reading:
    """A late reading stamped inside the outage (a gateway's buffer sent late), as calm as the robot's work."""
    return normal(0, 10.0 + (k % 7) * 0.1).model_copy(update={"ts": at(300) + timedelta(seconds=60 + 30 * k)})


@pytest.mark.parametrize("from_kafka", [True, False], ids=["from Kafka", "offline"])
def test_late_readings_inside_a_past_gap_sent_between_live_ones_close_nothing(from_kafka, caplog):
    """After an outage, the robot's readings resume past the gap (a leap) and a fault opens events; readings stamped
    inside the gap then come between live ones. Each was taken for the clock coming back from ahead: it closed the
    robot's open events, the next live reading leapt again, and the next late one closed them again (13 times for
    40, an event lost). The robot's events are now those of its feed without them."""

    def judge(engine: DetectorEngine, readings) -> list:
        if from_kafka:
            return placed(engine, readings, 0)
        return [a for r in readings for a in engine.process(r)]

    live = [normal(i) for i in range(300)] + [after_gap(i) for i in range(300, 460)]  # a fault from reading 350
    late = [inside_gap(k) for k in range(40)]
    mixed = live[:380] + [r for pair in zip(late, live[380:420], strict=True) for r in pair] + live[420:]
    expected = judge(DetectorEngine(), live)
    assert [a for a in expected if a.state is AlertState.OPEN and a.axis == 1 and a.opened_at >= after_gap(350).ts]
    engine = DetectorEngine()
    with caplog.at_level(logging.WARNING, logger="consumer_alerts.engine"):
        events = judge(engine, mixed)
    assert [a.model_dump() for a in events] == [a.model_dump() for a in expected]
    assert "ahead of its clock" not in caplog.text and "clock went back" not in caplog.text
    assert engine.robots["R"].last_ts == live[-1].ts.timestamp()


class Delivered:
    """A session as the feed sees it: what it was handed."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def deliver(self, rows: dict, alerts: list) -> None:
        self.rows += rows.get("R", [])


def test_the_dashboard_keeps_its_live_rows_when_late_readings_inside_a_past_gap_come_between_live_ones():
    """Before, each late reading took the clock back and dropped the live rows after it. Drawn, a reading far behind
    the robot's present stretched the chart's time axis back to it (the present a sliver at its end) and counted
    in the minute's peak: it is left out of the live view (consumer_db stores it; the history tab shows it)."""
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    before = [dashboard_reading(i, t0=t0, robot="R") for i in range(20)]
    resumed = [dashboard_reading(i, t0=t0 + GAP, robot="R") for i in range(40)]
    late = [dashboard_reading(i, t0=t0 + timedelta(minutes=30), robot="R") for i in range(20)]
    late = [r.model_copy(update={"currents": {**r.currents, 1: 99.0}}) for r in late]
    feed, session = dashboard_feed(), Delivered()
    feed.register(session)
    feed.ingest(
        messages(feed, before + resumed[:20] + [r for pair in zip(late, resumed[20:], strict=True) for r in pair])
    )
    window = feed.robots["R"]
    assert window.rewinds == 0 and window.newest == resumed[-1].ts
    assert {value.ts for value in window.latest.values()} == {resumed[-1].ts}
    shown = [r.ts.timestamp() * 1000 for r in before + resumed]
    assert list(window.rows.columns(["ts"])["ts"]) == shown[-len(window.rows) :]
    assert [row["ts"] for row in session.rows] == shown
    assert max(peak.amps for peak in window.recent) < 99.0


LATENCY_S = 0.3  # from a live reading's time to its Kafka record's (CreateTime)


def recorded(readings, late_after: Reading | None = None) -> list[tuple[Reading, float]]:
    """Each reading with its Kafka record's time: a live one's, its own plus the latency; a late one sent from a
    buffer (``late_after``), the time the live reading ``late_after`` was produced, now."""
    sent_at = late_after.ts.timestamp() + LATENCY_S if late_after is not None else None
    return [(r, sent_at if sent_at is not None else r.ts.timestamp() + LATENCY_S) for r in readings]


def judged_with_records(engine: DetectorEngine, fed: list[tuple[Reading, float]], path: str) -> list:
    """The events of readings read from Kafka with their records' times: by the engine, or the service's path."""
    if path == "engine":
        return [a for k, (r, record) in enumerate(fed) for a in engine.process(r, (0, k), record)]
    batch = [Message("readings", 0, k, b"R", r.to_bytes(), round(record * 1000)) for k, (r, record) in enumerate(fed)]
    return [a for events in events_per_reading(engine, batch) if isinstance(events, list) for a in events]


@pytest.mark.parametrize("path", ["engine", "service"])
def test_a_burst_of_late_readings_inside_a_past_outage_closes_nothing_when_record_times_are_known(path, caplog):
    """After an outage, a fault opens events; then the gateway sends its buffer all at once: 40 readings stamped
    inside the gap, no live reading between them. By reading time alone that is a clock coming back from ahead (the
    robot's events closed, its state was reset). Their Kafka records were produced now, and over the outage the
    records' times leapt with the readings': they are late readings, and the robot's events are those of its feed
    without them."""
    live = [normal(i) for i in range(300)] + [after_gap(i) for i in range(300, 460)]  # a fault from reading 350
    burst = [inside_gap(k) for k in range(40)]
    expected = judged_with_records(DetectorEngine(), recorded(live), path)
    assert [a for a in expected if a.state is AlertState.OPEN and a.axis == 1 and a.opened_at >= after_gap(350).ts]
    fed = recorded(live[:380]) + recorded(burst, late_after=live[379]) + recorded(live[380:])
    engine = DetectorEngine()
    with caplog.at_level(logging.WARNING, logger="consumer_alerts.engine"):
        events = judged_with_records(engine, fed, path)
    assert [a.model_dump() for a in events] == [a.model_dump() for a in expected]
    assert "ahead of its clock" not in caplog.text and "clock went back" not in caplog.text
    warned = [r.getMessage() for r in caplog.records if "behind its newest" in r.getMessage()]
    assert len(warned) == 1 and "a late reading, stamped inside its silence" in warned[0]
    assert engine.robots["R"].last_ts == live[-1].ts.timestamp()
    # a restart keeps the silence
    restored = DetectorEngine()
    load_robot(restored, "R", robot_snapshot(engine.robots["R"]))
    outage = (at(299).timestamp(), after_gap(300).ts.timestamp())
    assert restored.robots["R"].silence == engine.robots["R"].silence == outage


def test_a_clock_ahead_and_corrected_is_followed_back_when_its_records_times_held_steady():
    """The records' times of readings from a clock that leapt ahead do not leap: their clock coming back is
    followed as without record times."""
    plain = [normal(i) for i in range(400)]
    from_ahead = [ahead(k) for k in range(10)]
    steady = [(r, plain[20].ts.timestamp() + k * 2 + LATENCY_S) for k, r in enumerate(from_ahead)]
    fed = recorded(plain[:20]) + steady + [(r, r.ts.timestamp() + 20 + LATENCY_S) for r in plain[20:]]
    expected = fault_events(DetectorEngine(), plain[:20] + plain[20 + SET_BACK_RUN - 1 :])
    assert expected
    engine = DetectorEngine()
    events = judged_with_records(engine, fed, "engine")
    assert {a.detector for a in events if a.state is AlertState.OPEN and a.opened_at >= at(350) and a.axis == 1} == (
        expected
    )
    assert engine.robots["R"].last_ts == plain[-1].ts.timestamp() and engine.robots["R"].silence == NO_LEAP


def test_a_silence_is_a_leap_its_records_times_leapt_with():
    bound = STOPPAGE_RESET_S
    # an outage of an hour: the readings' times and their records' leap together (the gap between them moved 5 s)
    assert next_silence(NO_LEAP, 100.0, 100.5, 3_700.0, 3_705.5, bound) == (100.0, 3_700.0)
    # a clock leapt ahead a day: its record's time moved 2 s
    assert next_silence(NO_LEAP, 100.0, 100.5, 86_500.0, 102.5, bound) == NO_LEAP
    # a replay at full speed: records' times far from the readings' and barely moving; its stoppages are leaps
    assert next_silence(NO_LEAP, 100.0, 9e8, 3_700.0, 9e8 + 0.01, bound) == NO_LEAP
    # no leap, or record times not known: the silence as it was
    kept = (1.0, 2.0)
    assert next_silence(kept, 100.0, 100.5, 100.0 + bound, 100.5 + bound, bound) == kept
    assert next_silence(kept, 100.0, None, 3_700.0, 3_705.5, bound) == kept
    assert next_silence(kept, None, None, 3_700.0, 3_705.5, bound) == kept
    assert late((100.0, 3_700.0), 4_000.0, 2_000.0, bound) and not late((100.0, 3_700.0), 2_500.0, 2_000.0, bound)
    assert not late(NO_LEAP, 4_000.0, 2_000.0, bound)


def test_the_dashboard_keeps_its_live_rows_through_a_burst_of_late_readings_when_record_times_are_known():
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    before = [dashboard_reading(i, t0=t0, robot="R") for i in range(20)]
    resumed = [dashboard_reading(i, t0=t0 + GAP, robot="R") for i in range(40)]
    burst = [dashboard_reading(i, t0=t0 + timedelta(minutes=30), robot="R") for i in range(20)]
    feed, session = dashboard_feed(), Delivered()
    feed.register(session)
    topic = feed.settings.readings_topic
    live = [(r, r.ts.timestamp() + LATENCY_S) for r in before + resumed]
    late_sent = [(r, resumed[-1].ts.timestamp() + LATENCY_S) for r in burst]
    feed.ingest(
        [Message(topic, 0, k, b"R", r.to_bytes(), round(t * 1000)) for k, (r, t) in enumerate(live + late_sent)]
    )
    window = feed.robots["R"]
    assert window.rewinds == 0 and window.newest == resumed[-1].ts
    assert [row["ts"] for row in session.rows] == [r.ts.timestamp() * 1000 for r in before + resumed]


def test_readings_re_read_around_a_clock_leap_are_skipped():
    engine = DetectorEngine()
    before = [normal(i, 10.0 + (i % 7) * 0.1) for i in range(300)]
    from_ahead = [ahead(k) for k in range(10)]
    for reading in before + from_ahead:
        engine.process(reading)
    # a restart re-reads its batch: the readings before the leap and those from ahead, all with a fault's value
    faulty = [r.model_copy(update={"currents": {1: 40.0}}) for r in before[-100:] + from_ahead]
    assert all(engine.process(r) == [] for r in faulty)
    # a reading a little older than the newest (less than a stoppage) waits as before
    assert engine.process(ahead(5).model_copy(update={"ts": from_ahead[-1].ts - timedelta(seconds=60)})) == []


def test_a_clock_set_back_to_stay_is_warned_of_once_until_its_robots_newest_moves_a_stoppage(caplog):
    # an hour's stoppage after its tenth reading: its first reading's leap (from the beginning of time) is gone
    later = [normal(i).model_copy(update={"ts": at(i) + timedelta(hours=1)}) for i in range(10, 331)]
    engine = DetectorEngine()
    for reading in [normal(i) for i in range(10)] + later[:-1]:
        engine.process(reading)
    set_back = [normal(i).model_copy(update={"ts": at(i) - timedelta(days=3)}) for i in range(300, 330)]
    with caplog.at_level(logging.WARNING, logger="consumer_alerts.engine"):
        assert all(engine.process(r) == [] for r in set_back)  # outside any leap: not judged
        engine.process(later[-30])  # a little out of order (less than a stoppage behind): no warning
    warned = [r.getMessage() for r in caplog.records if "behind its newest" in r.getMessage()]
    assert len(warned) == 1
    assert "robot 'R'" in warned[0] and (START - timedelta(days=3)).strftime("%Y-%m-%d") in warned[0]
    assert later[-2].ts.strftime("%Y-%m-%dT%H:%M:%S") in warned[0]  # until when its readings go unjudged
    caplog.clear()
    # old readings sent between live ones: one warning, not one each
    going_on = [normal(i).model_copy(update={"ts": at(i) + timedelta(hours=1)}) for i in range(331, 331 + 2 * 160)]
    with caplog.at_level(logging.WARNING, logger="consumer_alerts.engine"):
        engine.process(later[-1])
        for live, old in zip(going_on[:150], set_back * 5, strict=False):
            engine.process(live)
            engine.process(old)
    assert len([r for r in caplog.records if "behind its newest" in r.getMessage()]) == 0  # warned of already
    caplog.clear()
    # once the robot's newest has moved by more than a stoppage (STOPPAGE_RESET_S), the next is warned of again
    with caplog.at_level(logging.WARNING, logger="consumer_alerts.engine"):
        for live in going_on[150:]:
            engine.process(live)
        engine.process(set_back[0])
        engine.process(set_back[1])
    assert len([r for r in caplog.records if "behind its newest" in r.getMessage()]) == 1


def set_back_feed() -> tuple[list[Reading], list[Reading]]:
    """300 readings with an hour's stoppage after the tenth (its first reading's leap is gone), then the clock
    set back three days (after a stoppage) for 400 readings, a fault on axis 1 from the 350th (``normal``)."""
    before = [normal(i, 10.0 + (i % 7) * 0.1) for i in range(300)]
    before[10:] = [r.model_copy(update={"ts": r.ts + timedelta(hours=1)}) for r in before[10:]]
    back = [normal(i).model_copy(update={"ts": at(i) - timedelta(days=3)}) for i in range(400)]
    return before, back


def placed(engine: DetectorEngine, readings, first_offset: int, partition: int = 0) -> list:
    """The events of ``readings`` judged as read from Kafka, at offsets from ``first_offset``."""
    return [a for k, r in enumerate(readings) for a in engine.process(r, (partition, first_offset + k))]


def set_back_faults(events) -> set[str]:
    back_from = at(350) - timedelta(days=3)
    return {a.detector for a in events if a.state is AlertState.OPEN and a.axis == 1 and a.opened_at >= back_from}


def test_a_clock_set_back_after_a_stoppage_is_judged_again_when_its_offsets_are_new(caplog):
    before, back = set_back_feed()
    engine = DetectorEngine()
    placed(engine, before, 0)
    with caplog.at_level(logging.WARNING, logger="consumer_alerts.engine"):
        events = placed(engine, back, 300)
    assert set_back_faults(events), "the fault after the set back raises its event"
    assert engine.robots["R"].last_ts == back[-1].ts.timestamp() and engine.robots["R"].read_to == (0, 700)
    warned = [r.getMessage() for r in caplog.records if "clock went back" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("robot 'R': its clock went back from ")
    waiting = [r.getMessage() for r in caplog.records if "behind its newest" in r.getMessage()]
    assert len(waiting) == 1 and f"followed once {SET_BACK_RUN} such come in a row" in waiting[0]
    # without its offsets (offline) the same feed is the redelivery it looks like by time: nothing is judged
    offline = DetectorEngine()
    for reading in before:
        offline.process(reading)
    assert not set_back_faults(a for r in back for a in offline.process(r))
    assert offline.robots["R"].last_ts == before[-1].ts.timestamp()


def test_a_robot_id_in_the_set_back_warning_is_escaped(caplog):
    robot = "R'\\n"
    before, back = ([r.model_copy(update={"robot_id": robot}) for r in feed] for feed in set_back_feed())
    engine = DetectorEngine()
    placed(engine, before, 0)
    with caplog.at_level(logging.WARNING, logger="consumer_alerts.engine"):
        placed(engine, back[:SET_BACK_RUN], 300)
    warned = [r.getMessage() for r in caplog.records if "clock went back" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith(f"robot {robot!r}:")


def test_a_stray_reading_far_in_the_past_or_old_readings_between_live_ones_set_no_clock_back(caplog):
    before, back = set_back_feed()
    live = [r.model_copy(update={"ts": r.ts + timedelta(hours=1)}) for r in set_back_feed()[0][10:]]
    live = [r.model_copy(update={"currents": {1: 80.0}}) if k >= 150 else r for k, r in enumerate(live)]
    engine = DetectorEngine()
    placed(engine, before, 0)
    # one reading stamped days back (valid: a glitch) in the live feed, then the old feed's readings sent
    # between live ones, one of each in turn: never SET_BACK_RUN in a row, so the robot's time never goes back
    stray = [back[0]] + [r for pair in zip(back[1:], live, strict=False) for r in pair]
    with caplog.at_level(logging.WARNING, logger="consumer_alerts.engine"):
        events = placed(engine, stray, 300)
    assert "clock went back" not in caplog.text
    assert engine.robots["R"].last_ts == live[-1].ts.timestamp()
    opened = [a for a in events if a.state is AlertState.OPEN and a.axis == 1]
    assert opened and all(a.opened_at >= live[150].ts for a in opened)  # the live fault, on the live clock
    closed = [a for a in events if a.state is AlertState.CLOSED]
    assert not closed, "no event closes because of the old readings"


def test_readings_re_read_around_a_clock_set_back_are_skipped_by_their_offset():
    before, back = set_back_feed()
    engine = DetectorEngine()
    first = placed(engine, before, 0) + placed(engine, back, 300)
    assert set_back_faults(first)
    newest = engine.robots["R"].last_ts
    # a restart re-reads the partition from further back than the state: the readings after the set back are
    # behind the robot's newest by time and, by offset, judged already
    assert placed(engine, back, 300) == []
    assert engine.robots["R"].last_ts == newest and engine.robots["R"].read_to == (0, 700)
    # fewer than SET_BACK_RUN from before it (ahead by time) are skipped by their offset too
    assert placed(engine, before[-SET_BACK_RUN + 1 :], 300 - SET_BACK_RUN + 1) == []
    assert engine.robots["R"].last_ts == newest
    # and a faulty value re-read from behind the newest, past a stoppage, opens nothing either
    faulty = [r.model_copy(update={"currents": {1: 80.0}}) for r in back[:100]]
    assert placed(engine, faulty, 300) == []


def test_offsets_that_start_again_are_followed_once_a_run_of_readings_is_newer_than_the_newest(caplog):
    before, _ = set_back_feed()
    engine = DetectorEngine()
    placed(engine, before, 0)
    # the readings topic made anew: its offsets start at 0 again while the robot's readings go on, a fault later
    going_on = [normal(i).model_copy(update={"ts": at(i) + timedelta(hours=1)}) for i in range(300, 420)]
    with caplog.at_level(logging.WARNING, logger="consumer_alerts.engine"):
        events = placed(engine, going_on, 0)
    warned = [r.getMessage() for r in caplog.records if "offsets started again" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("robot 'R': readings at offsets before 300 on partition 0")
    assert engine.robots["R"].last_ts == going_on[-1].ts.timestamp() and engine.robots["R"].read_to == (0, 120)
    fault = going_on[50].ts  # normal(350): the fault's first reading
    assert {a.detector for a in events if a.state is AlertState.OPEN and a.axis == 1 and a.opened_at >= fault}
    # the run's first readings were skipped as redeliveries: the robot's time went on from the tenth
    assert not [a for a in events if a.opened_at < going_on[SET_BACK_RUN - 1].ts]


def test_a_reading_at_a_new_offset_a_little_behind_waits_as_before():
    before, _ = set_back_feed()
    engine = DetectorEngine()
    placed(engine, before, 0)
    late = before[-1].model_copy(update={"ts": before[-1].ts - timedelta(seconds=60), "currents": {1: 80.0}})
    assert engine.process(late, (0, 300)) == []
    assert engine.robots["R"].last_ts == before[-1].ts.timestamp()
    # on another partition (the topic re-partitioned), offsets do not compare: judged by time, as without them
    old = before[0].model_copy(update={"currents": {1: 80.0}})
    assert engine.process(old, (3, 0)) == [] and engine.robots["R"].read_to == (3, 1)


@pytest.mark.parametrize("ts", ["1970-01-01T00:00:00Z", "2200-01-01T00:00:00Z"])
def test_an_absurd_time_from_a_new_offset_is_refused_and_sets_no_clock_back(ts, caplog):
    before, back = set_back_feed()
    engine = DetectorEngine()
    intake = Intake()
    messages = [Message("readings", 0, k, b"R", r.to_bytes()) for k, r in enumerate(before)]
    absurd = Reading(robot_id="R", ts=datetime.fromisoformat(ts), currents={1: 80.0})
    messages.append(Message("readings", 0, 300, b"R", absurd.to_bytes()))
    with caplog.at_level(logging.WARNING):
        events = [e for e in events_per_reading(engine, messages, intake=intake) if isinstance(e, list)]
    assert not [a for batch in events for a in batch if a.opened_at >= at(299)]
    assert engine.robots["R"].last_ts == before[-1].ts.timestamp()  # the robot's time did not move
    assert "offset 300 skipped" in caplog.text and "clock went back" not in caplog.text


def test_a_saved_state_keeps_the_leap_and_an_older_one_reads_as_a_lone_leap():
    engine = DetectorEngine()
    from_ahead = [ahead(k) for k in range(3)]
    for reading in [normal(i, 10.0) for i in range(20)] + from_ahead:
        engine.process(reading)
    saved = robot_snapshot(engine.robots["R"])
    assert saved["leap"] == [at(19).timestamp(), from_ahead[0].ts.timestamp()]
    restored = DetectorEngine()
    load_robot(restored, "R", saved)
    assert restored.robots["R"].leap == engine.robots["R"].leap
    # a state saved by the rule for a lone reading from ahead: the reading before the newest, and the newest
    older = {k: v for k, v in saved.items() if k != "leap"} | {"before_last_ts": 100.0, "last_ts": 5_000.0}
    load_robot(restored, "R2", older)
    assert restored.robots["R2"].leap == (100.0, 5_000.0)


def cycles(splitter: CycleSplitter, stream) -> list:
    out = []
    for ts, amps in stream:
        out += splitter.push(ts, {1: amps, 2: 1.0 if amps else 0.0})
    return out


def work(first: int, count: int) -> list[tuple[float, float]]:
    """Readings every 2 s from ``first``: 10 of motion, 5 idle, over and over."""
    return [(at(i).timestamp(), 0.0 if i % 15 >= 10 else 5.0 + i % 3) for i in range(first, first + count)]


def test_the_cycle_splitter_follows_the_clock_back_where_the_detectors_did():
    """The splitter keeps no clock rule of its own: it goes back where the engine went back (the service tells it),
    so both skip the same readings, and late readings the engine skips end no cycle."""
    plain = cycles(CycleSplitter("R"), work(0, 600))
    far = datetime.now(UTC).timestamp() + DAY_AHEAD.total_seconds()
    from_ahead = [(far + 2 * k, 5.0 if k < 9 else 0.0) for k in range(10)]  # the last one idle
    engine, splitter, got = DetectorEngine(), CycleSplitter("R"), []
    for ts, amps in work(0, 300) + from_ahead + work(300, 300):
        newest = engine.newest("R")
        engine.process(Reading(robot_id="R", ts=datetime.fromtimestamp(ts, UTC), currents={1: amps}))
        went_back = newest is not None and engine.newest("R") < newest
        got += splitter.push(ts, {1: amps, 2: 1.0 if amps else 0.0}, clock_went_back=went_back)
    # followed back at the SET_BACK_RUN-th corrected reading (300 + 9, in a work cycle): the cycles after it as
    # without the leap, no cold one
    followed = at(300 + SET_BACK_RUN - 1).timestamp()
    after = [c for c in got if followed < c.start < far]
    assert [(c.start, c.end) for c in after] == [(c.start, c.end) for c in plain if c.start > followed]
    assert not any(c.cold for c in after) and not [c for c in got if at(300).timestamp() <= c.start < followed]
    # the cycle of the readings from ahead ended when the clock came back, at its idle reading, as at a gap
    assert [(c.start, c.end) for c in got if c.start >= far] == [(far, far + 18)]
    # without the engine's word, a reading back is skipped (a restart re-reads what it took), around the leap too
    assert cycles(splitter, work(250, 50) + from_ahead) == []


def dashboard_feed() -> LiveFeed:
    return LiveFeed(DashboardSettings(_env_file=None, bus="memory", window_rows=50), InProcessBus())


def messages(feed: LiveFeed, readings) -> list[Message]:
    topic = feed.settings.readings_topic
    return [Message(topic, 0, i, r.robot_id.encode(), r.to_bytes()) for i, r in enumerate(readings)]


def test_the_dashboard_follows_a_clock_that_leapt_ahead_and_came_back():
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    far = datetime.now(UTC).replace(microsecond=0) + DAY_AHEAD
    plain = [dashboard_reading(i, t0=t0, robot="R") for i in range(40)]
    from_ahead = [dashboard_reading(i, t0=far, robot="R") for i in range(10)]
    feed = dashboard_feed()
    feed.ingest(messages(feed, plain[:20] + from_ahead))
    window = feed.robots["R"]
    assert window.newest == from_ahead[-1].ts and window.rewinds == 0
    feed.ingest(messages(feed, plain[20:]))
    # latest values, newest, the minute's peaks and the chart rows are the robot's own again, none from ahead
    assert window.newest == plain[-1].ts and window.rewinds == 1
    assert {value.ts for value in window.latest.values()} == {plain[-1].ts}
    assert all(peak.ts <= plain[-1].ts for peak in window.recent) and len(window.recent) <= 31
    assert max(window.rows.columns(["ts"])["ts"]) == plain[-1].ts.timestamp() * 1000
    # the run's first readings, far behind the newest until the run said so, are not drawn
    assert len(window.rows) == 40 - (SET_BACK_RUN - 1)
    assert feed.status.newest_ts == plain[-1].ts


def test_the_dashboard_follows_a_clock_set_back_to_stay_once_a_run_of_readings_says_so(caplog):
    """The feed reads each message once (no redelivery), so a run of SET_BACK_RUN readings far behind, each later
    than the one before, is the clock set back: before, the live view kept the old clock's latest values and
    newest reading until the new clock passed them (days here)."""
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    live = [dashboard_reading(i, t0=t0, robot="R") for i in range(59)]  # no stoppage since its first reading
    stray = [dashboard_reading(i, t0=t0 - timedelta(days=5), robot="R") for i in range(20)]
    back = [dashboard_reading(i, t0=t0 - timedelta(days=3), robot="R") for i in range(30)]
    feed = dashboard_feed()
    feed.ingest(messages(feed, live[:40]))
    window = feed.robots["R"]
    # one reading stamped days back, then old readings sent between live ones: the clock never goes back
    feed.ingest(messages(feed, [stray[0]] + [r for pair in zip(stray[1:], live[40:], strict=True) for r in pair]))
    assert window.rewinds == 0 and window.newest == live[-1].ts
    with caplog.at_level(logging.WARNING, logger="dashboard.window"):
        feed.ingest(messages(feed, back[: SET_BACK_RUN - 1]))
        assert window.rewinds == 0 and window.newest == live[-1].ts
        feed.ingest(messages(feed, back[SET_BACK_RUN - 1 :]))
    assert window.rewinds == 1 and window.newest == back[-1].ts and feed.status.newest_ts == back[-1].ts
    assert {value.ts for value in window.latest.values()} == {back[-1].ts}
    assert all(peak.ts <= back[-1].ts for peak in window.recent)
    assert max(window.rows.columns(["ts"])["ts"]) == back[-1].ts.timestamp() * 1000
    warned = [r.getMessage() for r in caplog.records if "clock went back" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("dashboard feed: robot 'R':")


def test_a_reading_older_than_the_newest_by_less_than_a_stoppage_changes_no_latest_value():
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    feed = dashboard_feed()
    feed.ingest(messages(feed, [dashboard_reading(i, t0=t0, robot="R") for i in (0, 1, 2, 200, 150)]))
    window = feed.robots["R"]
    assert window.rewinds == 0 and {v.ts for v in window.latest.values()} == {t0 + timedelta(seconds=400)}


def keyed(key: bytes | None, robot: str = "R1") -> Message:
    value = Reading(robot_id=robot, ts=at(0), currents={1: 5.0}).to_bytes()
    return Message("readings", 0, 7, key, value)


@pytest.mark.parametrize("key", [b"someone-else", None, b"r1", b"R1 "], ids=["another id", "none", "case", "space"])
def test_a_reading_whose_key_is_not_its_robot_id_is_refused_by_every_consumer(key, caplog):
    message = keyed(key)
    with pytest.raises(SchemaError, match="message key .* is not its robot id 'R1'"):
        DEFAULT_POLICY.read_message_values(message)
    with pytest.raises(SchemaError, match="message key"):
        DEFAULT_POLICY.read_message(message)
    # consumer_db: a dead letter with the reason
    batch = decode([message], Topics("readings", "alerts", "dead"))
    assert not batch.readings and "is not its robot id" in batch.rejected[0]["reason"]
    # consumer_alerts: skipped with the reason logged; the dashboard: not shown
    with caplog.at_level(logging.WARNING):
        assert list(events_per_reading(DetectorEngine(), [message], intake=Intake())) == []
    assert any("is not its robot id" in r.getMessage() for r in caplog.records)
    feed = dashboard_feed()
    feed.ingest([message._replace(topic=feed.settings.readings_topic)])
    assert feed.robots == {} and feed.status.rejected == 1


def test_a_reading_keyed_by_its_robot_id_is_read():
    assert DEFAULT_POLICY.read_message_values(keyed(b"R1")).robot_id == "R1"
    assert DEFAULT_POLICY.read_message(keyed(b"cell-4/R7@plant", "cell-4/R7@plant")).robot_id == "cell-4/R7@plant"


def test_a_tab_showing_the_robot_takes_its_window_whole_when_its_clock_comes_back():
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    far = datetime.now(UTC).replace(microsecond=0) + DAY_AHEAD
    plain = [dashboard_reading(i, t0=t0, robot="R") for i in range(40)]
    feed = LiveFeed(
        DashboardSettings(_env_file=None, bus="memory", window_rows=50, dashboard_sign_in=False), InProcessBus()
    )
    feed.ingest(messages(feed, plain[:20]))
    view = LiveView(Document(), feed)
    view.doc.add_next_tick_callback = lambda callback: callback()  # no server loop here: at once
    view.robot = "R"
    view._add_chart()
    feed.register(view)
    feed.ingest(messages(feed, [dashboard_reading(i, t0=far, robot="R") for i in range(3)]))
    assert max(view.source.data["ts"]) > plain[-1].ts.timestamp() * 1000  # streamed, as any reading
    feed.ingest(messages(feed, plain[20:]))
    # the chart's rows from ahead are gone from the tab too: its time axis spans the robot's own readings (from the
    # run's last on, once the clock went back)
    shown = plain[:20] + plain[20 + SET_BACK_RUN - 1 :]
    assert list(view.source.data["ts"]) == [r.ts.timestamp() * 1000 for r in shown]


def test_the_dashboard_takes_the_services_stoppage_setting():
    """An operator who sets STOPPAGE_RESET_S to an hour makes the detectors wait that long before following a
    clock back: the live view follows it back with them, not at the default's 600 s."""
    hour = {"stoppage_reset_s": 3600.0}
    t0 = at(0)
    plain = [dashboard_reading(i, t0=t0, robot="R") for i in range(40)]
    from_ahead = [dashboard_reading(i, t0=t0 + timedelta(seconds=2_000), robot="R") for i in range(5)]
    for settings, rewinds in ((hour, 0), ({}, 1)):
        feed = LiveFeed(DashboardSettings(_env_file=None, bus="memory", window_rows=50, **settings), InProcessBus())
        feed.ingest(messages(feed, plain[:20] + from_ahead + plain[20:]))
        assert feed.robots["R"].rewinds == rewinds


def ahead_with(k: int, amps: float) -> Reading:
    return ahead(k).model_copy(update={"currents": {1: amps}})


def test_an_event_opened_from_ahead_closes_when_the_clock_comes_back_and_opens_again_on_its_clock():
    """A fault read while the clock ran a day ahead opened an event dated a day ahead; once the clock came back,
    every reading was older than that event, which then could neither close nor fire for up to a day: the
    axis's detector was blind to the fault, and its event said it began tomorrow."""
    engine = DetectorEngine()
    out = [a for i in range(350) for a in engine.process(normal(i))]
    from_ahead = [ahead_with(k, 40.0) for k in range(60)]
    out += [a for r in from_ahead for a in engine.process(r)]
    opened = {a.event_id: a for a in out if a.state is AlertState.OPEN and a.opened_at >= from_ahead[0].ts}
    assert opened, "the fault read from ahead opens an event"
    # the clock comes back, the fault still there
    back = [a for i in range(350, 450) for a in engine.process(normal(i, 40.0))]
    closed = {a.event_id: a for a in back if a.state is AlertState.CLOSED}
    assert set(opened) <= set(closed)
    assert all(closed[e].closed_at == from_ahead[-1].ts for e in opened)  # as of its last reading from ahead
    # and raised again on the robot's own clock, for a maintenance person to see when it happened
    again = [a for a in back if a.state is AlertState.OPEN and a.event_id not in opened]
    assert again and all(at(350) <= a.opened_at <= at(449) for a in again)
    assert {a.opened_at for a in engine_open(engine)} <= {a.opened_at for a in again}


def engine_open(engine: DetectorEngine) -> list:
    return [
        life._alert(AlertState.OPEN)
        for _, state in engine.robots["R"].axes.items()
        for life in state.lifecycles
        if life.event is not None
    ]


def test_an_event_opened_before_a_leap_counts_its_quiet_again_from_the_corrected_clock():
    engine = DetectorEngine()
    for i in range(350):
        engine.process(normal(i))
    out = [a for i in range(350, 380) for a in engine.process(normal(i))]  # the fault: an event opens
    opened = [a for a in out if a.state is AlertState.OPEN]
    assert opened
    for k in range(5):  # quiet readings from ahead: the quiet begins a day ahead
        engine.process(ahead_with(k, 10.0))
    back = [a for i in range(380, 700) for a in engine.process(normal(i, 10.0 + (i % 7) * 0.1))]
    closed = [a for a in back if a.state is AlertState.CLOSED and a.event_id in {o.event_id for o in opened}]
    # closed on the robot's own clock once quiet for the hold-off, not left open until the clock caught up
    assert closed and all(at(380) <= a.closed_at <= at(700) for a in closed)
