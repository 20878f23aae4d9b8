"""Phrase tests: each phrase of consumer_db's table on a fixed fixture (SQLite), exact expected rows."""

import gc
import json
import os
import subprocess
import sys

import pytest

from common.defaults import MAX_COUNT
from consumer_db.cli import build_parser, main
from consumer_db.phrases import PHRASES, QueryArgs, UnknownPhrase, ask, find
from tests.phrase_fixture import CASES, at, fixture_sqlite  # noqa: F401 - a fixture


def comparable(rows: list[dict]) -> list[dict]:
    """Floats to 9 decimals (SQL float sums may differ in the last bit); alert rows lose updated_at."""
    return [
        {k: round(v, 9) if isinstance(v, float) else v for k, v in row.items() if k != "updated_at"} for row in rows
    ]


@pytest.fixture(scope="module")
def engine(fixture_sqlite):
    return fixture_sqlite


@pytest.mark.parametrize(("phrase", "args", "rows", "tables"), CASES, ids=[f"{c[0]} {c[1]}" for c in CASES])
def test_phrase_gives_exact_rows(engine, phrase, args, rows, tables):
    with engine.connect() as conn:
        answer = ask(conn, phrase, QueryArgs(**args))
        assert comparable(answer.rows) == comparable(rows)  # read while connected: a big answer streams
    assert {k: comparable(v) for k, v in answer.tables.items()} == {k: comparable(v) for k, v in tables.items()}


def test_every_phrase_has_a_case():
    assert {find(case[0])[0].name for case in CASES} == {p.name for p in PHRASES}


@pytest.mark.parametrize(
    "said", ["show 1-minute peak", "Show 1 - Minute   PEAK", "one minute peak", "show_1_minute_peak"]
)
def test_phrases_match_case_space_and_hyphen_insensitively(said):
    assert find(said)[0].name == "show 1-minute peak"


def test_number_in_the_phrase():
    assert find("show latest 50 rows") == (find("latest rows")[0], 50)
    assert find("latest rows")[1] is None


@pytest.mark.parametrize(
    ("digits", "count"),
    [("9" * 25, MAX_COUNT), ("9" * 5000, MAX_COUNT), ("0" * 5000 + "7", 7), (" +12 ", 12)],
    ids=lambda d: d if isinstance(d, int) else f"{len(d)} characters",
)
def test_a_count_of_any_length_reads_the_same_as_an_option_and_in_the_phrase(digits, count):
    """Past 4,300 digits int() refuses a string: --n and --page-size said "not a whole number" where the
    phrase's own number read as MAX_COUNT (a count past SQL's bigint asks for all)."""
    options = build_parser().parse_args(["export", "--out", "x", "--page-size", digits, "--sample-rows", digits])
    query = build_parser().parse_args(["query", "tail", "--n", digits])
    assert options.page_size == options.sample_rows == query.n == count
    assert find(f"latest {digits.strip().lstrip('+')} rows")[1] == count


@pytest.mark.parametrize(
    ("option", "says"),
    [("12a", "not a whole number"), ("1.5", "not a whole number"), ("0", "1 or more"), ("-" + "9" * 5000, "1 or more")],
)
def test_a_count_option_that_is_no_count_says_why(capsys, option, says):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["query", "tail", "--n", option])
    assert says in capsys.readouterr().err


@pytest.mark.parametrize("said", ["latest five rows", "latest 5 rows please", "the latest 5 rows", "latest 5", "rows"])
def test_a_phrase_is_said_whole_and_its_number_in_digits(said):
    with pytest.raises(UnknownPhrase):
        find(said)


def test_unknown_phrase_lists_the_known_ones():
    with pytest.raises(UnknownPhrase) as caught:
        find("show me everything")
    assert all(p.name.replace("{n}", "N") in str(caught.value) for p in PHRASES)


def test_cli_query_json_and_csv(engine, capsys):
    url = engine.url.render_as_string(hide_password=False)
    assert main(["--database-url", url, "query", "show 1-minute peak", "--robot-id", "R1", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {
            "robot_id": "R1",
            "axis_id": 1,
            "label": "Axis #1",
            "peak_amps": 4.5,
            "ts": "2022-10-17T12:01:12.000Z",
            "window_start": "2022-10-17T12:00:14.000Z",
            "window_end": "2022-10-17T12:01:14.000Z",
        }
    ]
    assert main(["--database-url", url, "query", "latest 1 rows", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "robot_id,ts,Axis #1,Axis #2",
        "R2,2022-10-17T12:01:42.000Z,6.0,",
    ]


def test_cli_query_table_prints_side_tables(engine, capsys):
    url = engine.url.render_as_string(hide_password=False)
    assert main(["--database-url", url, "query", "data health", "--end", at(200).isoformat()]) == 0
    out = capsys.readouterr().out
    assert "gaps:" in out and "62.000" in out and "2022-10-17T12:00:08.000Z" in out


@pytest.mark.parametrize(
    ("options", "minutes", "noted"),
    [
        ([], [1], True),  # the fleet's newest minute: its 6 robot-axes fill the 6 rows
        (["--start", at(60).isoformat()], [1], False),  # nothing of the range left out
        (["--robot-id", "R1"], [1], True),  # R1's 4 axes: 1 minute of 6 rows
        (["--robot-id", "R2"], [1], False),  # R2's 2 axes: 3 minutes back, its only minute among them
        (["--end", at(59).isoformat()], [0], False),  # up to 12:00:59: minute 0 is the newest, nothing before
    ],
)
def test_cli_the_resample_answers_the_newest_minutes_within_its_rows_and_says_what_was_left_out(
    engine, capsys, monkeypatch, options, minutes, noted
):
    """At most RESAMPLE_ROWS rows: the range's newest minutes (one row per robot, minute and axis of
    axes_dim); stderr says from when and how to ask for earlier ones, stdout stays the answer alone."""
    from consumer_db import phrases

    monkeypatch.setattr(phrases, "RESAMPLE_ROWS", 6)
    url = engine.url.render_as_string(hide_password=False)
    assert main(["--database-url", url, "query", "show 1-minute resample", *options, "--format", "json"]) == 0
    out, err = capsys.readouterr()
    rows = json.loads(out)
    assert 0 < len(rows) <= 6
    assert {row["minute"] for row in rows} == {at(60 * m).isoformat().replace("+00:00", ".000Z") for m in minutes}
    assert ("from 2022-10-17T12:01Z" in err and "show hourly resample" in err) is noted


def test_the_resample_within_its_rows_is_the_whole_curve_of_its_minutes(engine):
    """What the bounded answer holds equals the unbounded curve from its first minute on."""
    from common.store import queries

    with engine.connect() as conn:
        rows, first = queries.resample_newest_minutes(conn, max_rows=6)
        assert first == at(60)
        assert rows == queries.resample_1min(conn, start=first)
        assert queries.resample_newest_minutes(conn, max_rows=100) == (queries.resample_1min(conn), None)


def test_cli_unknown_phrase_is_an_error(engine, capsys):
    url = engine.url.render_as_string(hide_password=False)
    assert main(["--database-url", url, "query", "make coffee"]) == 2
    err = capsys.readouterr().err
    assert "unknown phrase 'make coffee'" in err and "show latest per axis" in err


@pytest.mark.parametrize(
    "options",
    [
        ["tail", "--n", "-1"],
        ["tail", "--n", "-3"],
        ["tail", "--n", "0"],
        ["tail", "--n", "x"],
        ["data health", "--gap-threshold", "-5"],
        ["data health", "--gap-threshold", "nan"],
        ["data health", "--gap-threshold", "inf"],
        ["summary", "--start", "2022-10-17T13:00:00Z", "--end", "2022-10-17T12:00:00Z"],
    ],
    ids=lambda o: " ".join(o),
)
def test_cli_nonsense_options_are_usage_errors_without_sql(engine, capsys, options):
    url = engine.url.render_as_string(hide_password=False)
    with pytest.raises(SystemExit) as exited:
        main(["--database-url", url, "query", *options])
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert "usage:" in err and "Traceback" not in err and "SELECT" not in err.upper()


def test_cli_a_phrase_asking_for_zero_rows_is_an_error_not_twenty(engine, capsys):
    url = engine.url.render_as_string(hide_password=False)
    assert main(["--database-url", url, "query", "latest 0 rows"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "1 or more" in captured.err and "Traceback" not in captured.err
    assert main(["--database-url", url, "query", "latest 2 rows", "--format", "csv"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1 + 2


def test_start_up_runs_without_the_collector_and_the_work_with_it(engine, monkeypatch, capsys):
    """Start-up (imports, settings, the engine) makes what lives until the exit and runs with the garbage
    collector off; what it made is frozen, and the command's work (a streamed answer's rows, the sink's batches)
    makes garbage and runs with the collector on; whatever the exit, the collector is on afterwards."""
    from common.store import db
    from consumer_db import phrases

    seen = []
    make_engine = db.make_engine
    monkeypatch.setattr(
        db, "make_engine", lambda *a, **kw: seen.append(("engine", gc.isenabled())) or make_engine(*a, **kw)
    )
    ask = phrases.ask
    monkeypatch.setattr(
        phrases, "ask", lambda *a: seen.append(("work", gc.isenabled(), gc.get_freeze_count() > 0)) or ask(*a)
    )
    url = engine.url.render_as_string(hide_password=False)
    try:
        assert main(["--database-url", url, "query", "summary"]) == 0
        assert seen == [("engine", False), ("work", True, True)] and gc.isenabled()
        assert "axis" in capsys.readouterr().out  # it did answer
        with pytest.raises(SystemExit):
            main(["query", "summary", "--n", "0"])  # refused by the parser, before any command
        assert gc.isenabled()
        monkeypatch.setenv("SINK_BATCH_SIZE", "none")  # refused by the settings
        assert main(["--database-url", url, "query", "summary"]) == 2
        assert len(seen) == 2 and gc.isenabled()
    finally:
        gc.unfreeze()  # gc.freeze is process-wide: give the test process its collector back


def test_the_sink_runs_with_the_collector_on(monkeypatch):
    """The sink makes no engine here (consumer_db.service does, then sets its own start-up aside): the
    collector comes on before it runs."""
    import common.service

    collector_on = []
    monkeypatch.setattr(common.service, "run_service", lambda serve, *_: collector_on.append(gc.isenabled()) or 0)
    try:
        assert main(["--database-url", "sqlite://", "run", "--no-migrate"]) == 0
        assert collector_on == [True] and gc.isenabled()
    finally:
        gc.unfreeze()


def test_cli_query_on_a_missing_sqlite_file_creates_nothing(tmp_path, capsys):
    missing = tmp_path / "nowhere.sqlite"
    assert main(["--database-url", f"sqlite:///{missing}", "query", "summary"]) == 1
    assert "no SQLite database" in capsys.readouterr().err
    assert not missing.exists()


# Loaded by the other commands (the sink, ingest, export, migrate), never needed to answer a phrase.
# (asyncio is not here: SQLAlchemy imports it.)
NOT_FOR_A_QUERY = ("pandas", "openpyxl", "aiokafka", "alembic", "prometheus_client", "bokeh", "tqdm")
IMPORTED = """
import sys
from common.defaults import MAX_COUNT
from consumer_db.cli import build_parser, main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:  # --help
    code = exc.code
print("\\nMODULES", " ".join(sorted(sys.modules)))
sys.exit(code)
"""


def imported_by(*argv: str, exit_code: int = 0) -> tuple[str, str, set[str]]:
    """What ``python -m consumer_db ARGV`` writes in a fresh interpreter (stdout, stderr), and the modules it
    loaded."""
    done = subprocess.run(
        [sys.executable, "-c", IMPORTED, *argv], capture_output=True, text=True, env={**os.environ, "LOG_LEVEL": "INFO"}
    )
    assert done.returncode == exit_code, done.stderr
    out, _, modules = done.stdout.rpartition("\nMODULES ")
    return out, done.stderr, set(modules.split())


def test_a_query_loads_only_what_answering_it_needs(engine):
    url = engine.url.render_as_string(hide_password=False)
    out, _, modules = imported_by("--database-url", url, "query", "show 1-minute resample", "--format", "json")
    assert json.loads(out)[0]["robot_id"] == "R1"  # it did answer, from the database
    assert "sqlalchemy" in modules and "pydantic_settings" in modules
    assert modules.isdisjoint(NOT_FOR_A_QUERY), modules & set(NOT_FOR_A_QUERY)
    assert "common.wire.schemas" not in modules  # the wire's models are for what reads readings, not a query


@pytest.mark.parametrize("phrase", ["show maintenance log", "show outcomes per detector"])
def test_the_maintenance_phrases_load_no_wire_model(engine, phrase):
    url = engine.url.render_as_string(hide_password=False)
    out, _, modules = imported_by("--database-url", url, "query", phrase, "--format", "json")
    assert json.loads(out)  # it did answer, from the fixture's maintenance log and alerts
    assert "common.store.maintenance" in modules
    assert "common.wire.schemas" not in modules  # its outcomes are counted by their words (common.wire.outcomes)


def test_listing_the_phrases_or_a_misspelt_one_needs_no_database_nor_library():
    nowhere = "postgresql+psycopg2://nobody:secret@127.0.0.1:9/nothing"  # no server listens on port 9
    listed, _, modules = imported_by("--database-url", nowhere, "query", "--list")
    assert "show latest per axis" in listed
    assert modules.isdisjoint({"sqlalchemy", "pydantic", "asyncio"}), modules
    _, told, modules = imported_by("--database-url", nowhere, "query", "shwo latest per axis", exit_code=2)
    assert "unknown phrase 'shwo latest per axis'" in told and "does not answer" not in told
    assert modules.isdisjoint({"sqlalchemy", "pydantic", "asyncio"}), modules
    listed, _, _ = imported_by("--database-url", nowhere, "query", exit_code=2)  # no phrase: the list, and a 2
    assert "show latest per axis" in listed


def test_help_loads_no_library():
    out, _, modules = imported_by("--help")
    assert "query" in out and "export" in out
    assert modules.isdisjoint({"sqlalchemy", "pydantic", *NOT_FOR_A_QUERY})


@pytest.mark.parametrize(
    ("phrase", "edge", "plain"),
    [
        ("window peaks", ["--start", "0001-01-01"], []),
        ("summary", ["--start", "0001-01-01", "--end", "9999-12-31T23:59:59"], []),
        ("data health", ["--start", "0001-01-01T00:00:00+05:00"], []),
        ("hourly resample", ["--end", "9999-12-31T23:59:59-05:00"], []),
        ("window peaks", ["--start", "9999-12-31T23:30:00"], ["--start", "9999-01-01"]),
        ("data health", ["--start", "9999-12-31T23:59:59"], ["--start", "9999-01-01"]),
        ("1-minute peak", ["--at", "0001-01-01T00:00:30"], ["--at", "1000-01-01"]),
        ("1-minute peak", ["--at", "9999-12-31T23:59:59-05:00"], ["--at", "9000-01-01"]),
    ],
    ids=lambda o: " ".join(o) if isinstance(o, list) else o,
)
def test_cli_a_time_at_the_calendars_ends_answers_as_a_time_inside_it(engine, capsys, phrase, edge, plain):
    """Ten thousand years of range, or a time whose UTC falls off the calendar (year 1 at +05:00): the answer
    is the one of a time just inside it (no reading is stored so near the calendar's ends), not a traceback."""
    url = engine.url.render_as_string(hide_password=False)
    assert main(["--database-url", url, "query", phrase, *plain, "--format", "json"]) == 0
    wanted = capsys.readouterr().out
    assert main(["--database-url", url, "query", phrase, *edge, "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and captured.out == wanted


@pytest.mark.parametrize(
    "asked",
    [
        ["latest 99999999999999999999999 rows"],
        ["tail", "--n", "9223372036854775808"],
        [f"latest {'9' * 5000} rows"],
        ["tail", "--n", "9" * 5000],
    ],
    ids=lambda a: " ".join(a)[:40],
)
def test_cli_more_rows_than_a_bigint_holds_asks_for_all_of_them(engine, capsys, asked):
    """A count past SQL's bigint was a LIMIT that SQLite's driver could not convert (a traceback) and that
    PostgreSQL refused ("bigint out of range")."""
    url = engine.url.render_as_string(hide_password=False)
    assert main(["--database-url", url, "query", "latest 1000000 rows", "--format", "json"]) == 0
    every = capsys.readouterr().out
    assert main(["--database-url", url, "query", *asked, "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and captured.out == every and len(json.loads(every)) > 1
