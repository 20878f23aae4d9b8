"""Schema: migrations match common.store.tables, UTC timestamps on SQLite, the axes_dim seeding rule, the views."""

import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, insert, select, text

from common.store import queries
from common.store.tables import axes_dim, axes_of, metadata, readings_fact, seed_axes
from consumer_db.migrate import current_revision, head_revision, migrate, newest_script
from tests.phrase_fixture import load


@pytest.fixture
def engine(sqlite_url):
    engine = create_engine(sqlite_url)
    yield engine
    engine.dispose()


def test_migrations_build_exactly_the_shared_tables(engine):
    assert current_revision(engine) is None
    assert migrate(engine) == head_revision()
    assert migrate(engine) == head_revision()  # a second run finds nothing to do
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        assert compare_metadata(context, metadata) == []


def test_timestamps_come_back_aware_utc_and_naive_ones_are_refused(engine):
    metadata.create_all(engine)
    berlin = timezone(timedelta(hours=2))
    with engine.begin() as conn:
        conn.execute(
            insert(readings_fact),
            [{"robot_id": "r", "axis_id": 1, "ts": datetime(2022, 10, 17, 14, 0, 0, 500, tzinfo=berlin), "amps": 1.0}],
        )
        ts, ingested = conn.execute(select(readings_fact.c.ts, readings_fact.c.ingested_at)).one()
        with pytest.raises(Exception, match="naive datetime"):
            conn.execute(
                insert(readings_fact), [{"robot_id": "r", "axis_id": 2, "ts": datetime(2022, 10, 17), "amps": 1.0}]
            )
    assert ts == datetime(2022, 10, 17, 12, 0, 0, 500, tzinfo=UTC) and ts.tzinfo == UTC
    assert ingested.tzinfo == UTC and abs(ingested - datetime.now(UTC)) < timedelta(minutes=5)


def test_seeding_gives_new_robots_the_configured_axes_and_leaves_known_ones_alone(engine):
    metadata.create_all(engine)
    with engine.begin() as conn:
        assert seed_axes(conn, robot_ids=["a"], axes=[1, 2]) == 2
        assert seed_axes(conn, robot_ids=["a", "b"], axes=[1, 2, 3]) == 3
        conn.execute(axes_dim.update().where(axes_dim.c.robot_id == "b", axes_dim.c.axis_id == 3).values(active=False))
        assert axes_of(conn) == {"a": [1, 2], "b": [1, 2, 3]}
        assert axes_of(conn, active_only=True) == {"a": [1, 2], "b": [1, 2]}
        labels = conn.execute(select(axes_dim.c.label, axes_dim.c.unit).where(axes_dim.c.robot_id == "b")).all()
    assert labels == [("Axis #1", "A"), ("Axis #2", "A"), ("Axis #3", "A")]


def _utc(value):
    # The views give SQLite's stored text for times; the query functions give datetimes.
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value


def _view(conn, name: str, *columns: str) -> list[tuple]:
    rows = conn.execute(text(f"SELECT {', '.join(columns)} FROM {name} ORDER BY {', '.join(columns[:3])}")).all()
    return [tuple(_utc(v) if isinstance(v, str) and v[:2] == "20" else v for v in row) for row in rows]


def _approx(rows):
    return [tuple(round(v, 9) if isinstance(v, float) else v for v in row) for row in rows]


def test_views_agree_with_the_query_functions(engine):
    load(engine)
    with engine.connect() as conn:
        assert _view(conn, "cat_latest_per_axis", "robot_id", "axis_id", "label", "ts", "amps") == [
            tuple(r.values()) for r in queries.latest_per_axis(conn)
        ]
        summary = (
            "robot_id",
            "axis_id",
            "label",
            "rows",
            "non_null",
            "ok_null_share",
            "idle_share",
            "mean_active_amps",
            "max_active_amps",
        )
        assert _approx(_view(conn, "cat_axis_summary", *summary)) == _approx(
            [tuple(r[k] for k in summary) for r in queries.axis_summary(conn)]
        )
        assert _approx(
            _view(conn, "cat_minute_peaks", "robot_id", "minute", "axis_id", "peak_amps", "mean_amps", '"values"')
        ) == _approx(
            [
                (r["robot_id"], r["minute"], r["axis_id"], r["max_amps"], r["mean_amps"], r["values"])
                for r in queries.resample_1min(conn)
            ]
        )
        health = queries.data_health(conn, gap_threshold_s=10)
        assert _approx(
            _view(conn, "cat_data_health", "robot_id", "first_ts", "last_ts", "span_s", "readings", "rows")
        ) == _approx(
            [(h["robot_id"], h["first_ts"], h["last_ts"], h["span_s"], h["readings"], h["rows"]) for h in health]
        )
        assert _approx(_view(conn, "cat_gaps", "robot_id", '"start"', '"end"', "length_s")) == _approx(
            [(h["robot_id"], g["start"], g["end"], g["length_s"]) for h in health for g in h["gaps"]]
        )


def test_the_newest_script_read_without_alembic_is_alembics_head():
    assert newest_script() == head_revision()


def test_an_up_to_date_database_is_left_without_loading_alembic(engine, tmp_path):
    migrate(engine)
    check = (
        "import sys; from sqlalchemy import create_engine; from consumer_db.migrate import migrate; "
        f"print(migrate(create_engine({engine.url.render_as_string(hide_password=False)!r})), "
        "'alembic' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    assert done.stdout.split() == [head_revision(), "False"]
    empty = create_engine(f"sqlite:///{tmp_path / 'empty.sqlite'}")
    assert migrate(empty) == head_revision() and current_revision(empty) == head_revision()  # alembic's way
    empty.dispose()


def test_a_database_behind_the_newest_script_is_migrated_to_it(engine):
    """The other side of the cheap check above: a database at an older revision is not taken for current."""
    from alembic.script import ScriptDirectory

    from consumer_db.migrate import alembic_config

    previous = ScriptDirectory.from_config(alembic_config()).get_revision(head_revision()).down_revision
    migrate(engine, previous)
    assert current_revision(engine) == previous
    assert migrate(engine) == head_revision() and current_revision(engine) == head_revision()
