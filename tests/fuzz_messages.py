"""Hypothesis strategies for malformed bus messages, and the check that a sink accounted for every one.

Shared by the unit fuzz tests (SQLite) and the integration one (PostgreSQL, whose text cannot hold NUL
and whose integer columns have limits SQLite does not).
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import strategies as st
from sqlalchemy import Engine, select

from common.errors import SchemaError
from common.store.tables import alerts, readings_fact, rejected_readings
from common.wire.bus import Message
from common.wire.schemas import MAX_AXIS, Alert, DeadLetter, Reading
from consumer_db.decode import Topics, origin

TOPICS = Topics("readings-fuzz", "alerts-fuzz", "dead-fuzz")
_offsets = itertools.count()  # unique origins across examples that share one database

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
aware_times = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=-14)), timezone(timedelta(hours=14))]),
)
odd_text = st.text(max_size=70)  # NUL, surrogate-free unicode, beyond 64 characters
# Finite: a reading cannot even be built with NaN or an infinity (common.wire.schemas.Amps); huge ones can.
currents = st.dictionaries(
    st.integers(-(2**40), 2**40) | st.sampled_from([1, 2, 3, 4, 9]),
    st.none() | st.floats(width=64, allow_nan=False, allow_infinity=False),
    max_size=6,
)

TEMPLATES = {
    "reading": {
        "schema_version": 1,
        "robot_id": "r1",
        "ts": "2022-10-17T12:00:00Z",
        "row": 2,
        "currents": {"1": 1.0, "2": None},
    },
    "alert": {
        "schema_version": 1,
        "event_id": "r1:1:zscore:x",
        "robot_id": "r1",
        "axis": 1,
        "detector": "zscore",
        "severity": "ALERT",
        "state": "open",
        "opened_at": "2022-10-17T12:00:00Z",
    },
    "dead": {"schema_version": 1, "source": "x.csv", "line": 3, "raw": "?", "reason": "bad"},
}


@st.composite
def mutated(draw, template: dict) -> bytes:
    """A message of the right shape with some fields replaced by any JSON, dropped, or added."""
    data = dict(template)
    for key in draw(st.lists(st.sampled_from(sorted(template) + ["extra"]), max_size=3)):
        if draw(st.booleans()):
            data[key] = draw(json_values)
        else:
            data.pop(key, None)
    return json.dumps(data, allow_nan=True).encode()


def valid(kind: str) -> st.SearchStrategy[bytes]:
    """Messages that pass the schema but carry odd values the database or the detectors must survive."""
    if kind == "reading":
        model = st.builds(
            Reading,
            robot_id=st.text(min_size=1, max_size=64),
            ts=aware_times,
            row=st.none() | st.integers(),
            currents=currents,
        )
    elif kind == "alert":
        model = st.builds(
            Alert,
            event_id=st.text(st.characters(blacklist_characters="\x00"), min_size=1, max_size=200),
            robot_id=odd_text,
            axis=st.integers(0, MAX_AXIS),
            detector=odd_text,
            severity=st.sampled_from(["ALERT", "ERROR"]),
            state=st.sampled_from(["open", "closed"]),
            opened_at=aware_times,
            closed_at=st.none() | aware_times,
            peak_amps=st.none() | st.floats(),
            acknowledged_by=st.none() | odd_text,
        )
    else:
        model = st.builds(
            DeadLetter,
            source=odd_text,
            line=st.none() | st.integers(-(2**70), 2**70),
            raw=odd_text,
            reason=odd_text,
            robot_id=st.none() | odd_text,
            received_at=aware_times,
        )
    return model.map(lambda m: m.to_bytes())


# Each of these once crashed a decoder (an exception other than SchemaError); the big ones are too slow
# for hypothesis to shrink, so tests use them directly.
POISON = {
    "nested too deep for json": b"[" * 100_000,
    "an integer of more than 4300 digits": b'{"schema_version": 1, "row": ' + b"1" * 5000 + b"}",
    "a time past the last UTC datetime": (
        b'{"schema_version":1,"robot_id":"r","ts":"9999-12-31T23:00:00-05:00","currents":{}}'
    ),
    "a time before the first UTC datetime": (
        b'{"schema_version":1,"robot_id":"r","ts":"0001-01-01T00:00:00+05:00","currents":{}}'
    ),
    "bytes that are not UTF-8": b"\xff\xfe\x00",
    "nothing": b"",
}
SMALL_POISON = [value for value in POISON.values() if len(value) < 200]


def payloads(kind: str) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=200),
        st.sampled_from(SMALL_POISON),
        json_values.map(lambda v: json.dumps(v).encode()),
        mutated(TEMPLATES[kind]),
        valid(kind),
    )


def key_of(value: bytes, otherwise: bytes = b"k") -> bytes:
    """The message key a producer gives a reading: its robot id (``otherwise`` when the value names none)."""
    try:
        robot_id = json.loads(value)["robot_id"]
    except (ValueError, TypeError, KeyError, RecursionError):
        return otherwise
    return robot_id.encode(errors="surrogatepass") if isinstance(robot_id, str) else otherwise


@st.composite
def messages(draw, max_size: int = 12) -> list[Message]:
    out = []
    topics = {"reading": TOPICS.readings, "alert": TOPICS.alerts, "dead": TOPICS.dead_letters}
    for kind in draw(st.lists(st.sampled_from([*topics, "other"]), min_size=1, max_size=max_size)):
        stamp = draw(st.none() | st.integers(-1, 2**63 - 1) | st.just(1_666_000_000_000))  # Kafka's record time
        value = draw(payloads(kind if kind in topics else "reading"))
        key = draw(st.none() | st.binary(max_size=80) | st.just(key_of(value)))  # a reading's own key, or any
        out.append(Message(topics.get(kind, "elsewhere"), 0, next(_offsets), key, value, stamp))
    return out


def unaccounted(engine: Engine, batch: list[Message]) -> list[Message]:
    """Messages of ``batch`` the database holds nowhere: not as readings, not as an alert event, not as a
    rejected record. A sink that lost nothing returns []."""
    with engine.connect() as conn:
        rejected = set(
            conn.execute(
                select(rejected_readings.c.origin).where(rejected_readings.c.origin.in_([origin(m) for m in batch]))
            ).scalars()
        )
        missing = []
        for m in batch:
            if origin(m) in rejected or _stored(conn, m):
                continue
            missing.append(m)
    return missing


def _stored(conn, message: Message) -> bool:
    try:
        if message.topic == TOPICS.readings:
            r = Reading.from_bytes(message.value)
            query = select(readings_fact.c.ts).where(readings_fact.c.robot_id == r.robot_id, readings_fact.c.ts == r.ts)
        elif message.topic == TOPICS.alerts:
            query = select(alerts.c.event_id).where(alerts.c.event_id == Alert.from_bytes(message.value).event_id)
        else:
            return False
    except SchemaError:
        return False
    return conn.execute(query.limit(1)).first() is not None
