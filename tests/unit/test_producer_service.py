"""The producer service on the in-process bus: data flow, dead letters, retries, loop, CLI, axis list."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, text

from common.csvio.controller_csv import CsvOptions
from common.wire.bus import InProcessBus
from common.wire.schemas import DeadLetter, Reading
from producer import cli
from producer.axes import axis_list
from producer.faults import read_labels
from producer.feed import csv_feed
from producer.pacing import ManualClock
from producer.service import run
from producer.settings import ProducerSettings

T0 = datetime(2022, 10, 17, 12, tzinfo=UTC)
GOOD = '"current",{a},2,,"2022-10-17T12:00:{s:02d}Z"'


def export(tmp_path, rows: list[str]):
    path = tmp_path / "feed.csv"
    path.write_text('"Trait","Axis #1","Axis #2","Axis #3","Time"\n' + "\n".join(rows) + "\n")
    return path


def settings(**kw) -> ProducerSettings:
    return ProducerSettings(
        **{"_env_file": None, "bus": "memory", "axes_from_db": False, "axes": "1-3", "max_speed": True, **kw}
    )


def messages(bus: InProcessBus, topic: str):
    return [m for partition in bus._log(topic) for m in partition]


async def test_rows_go_to_readings_and_bad_rows_to_dead_letters(tmp_path):
    rows = [GOOD.format(a=i, s=2 * i) for i in range(6)]
    rows[2] = '"current",oops,2,,"2022-10-17T12:00:04Z"'
    rows[4] = '"current",1,2'
    bus, config = InProcessBus(), settings(csv_path=export(tmp_path, rows))
    report = await run(config, bus=bus, stop=asyncio.Event())
    readings = [Reading.from_bytes(m.value) for m in messages(bus, config.readings_topic)]
    assert [r.row for r in readings] == [2, 3, 5, 7]
    assert all(m.key == b"RMBR4-2" for m in messages(bus, config.readings_topic))
    assert readings[0].currents == {1: 0.0, 2: 2.0, 3: None}
    letters = [DeadLetter.from_bytes(m.value) for m in messages(bus, config.dead_letter_topic)]
    assert [(d.source, d.line) for d in letters] == [("feed.csv", 4), ("feed.csv", 6)]
    assert (report.readings_confirmed, report.rejected, report.dead_letters_confirmed, report.unconfirmed) == (
        4,
        2,
        2,
        0,
    )
    assert "feed.csv:4: Axis #1: 'oops' is not a number" in report.summary()


async def test_what_the_broker_never_confirms_is_reported_not_counted():
    class DeadBus(InProcessBus):
        async def send(self, topic, key, value):
            return asyncio.get_running_loop().create_future()  # never resolves

    source = iter([Reading(robot_id="r", ts=T0, row=1, currents={1: 1.0})] * 3)
    report = await run(settings(shutdown_timeout_s=0.05), bus=DeadBus(), stop=asyncio.Event(), source=source)
    assert (report.readings, report.readings_confirmed, report.unconfirmed) == (3, 0, 3)
    assert "NOT SENT: 3 messages" in report.summary()


@pytest.mark.parametrize("readings", [3, None], ids=["while-draining", "while-producing"])
async def test_a_forced_stop_does_not_wait_for_confirmations(readings, caplog):
    """Cancelled (common.service: stopped by force), while it waits for confirmations at the end or while it is
    still producing, the producer reports what is unconfirmed at once instead of waiting for a broker gone."""

    class DeadBus(InProcessBus):
        async def send(self, topic, key, value):
            return asyncio.get_running_loop().create_future()  # never resolves

    reading = Reading(robot_id="r", ts=T0, row=1, currents={1: 1.0})
    source = itertools.repeat(reading, readings) if readings else itertools.repeat(reading)
    producing = asyncio.create_task(
        run(
            settings(shutdown_timeout_s=600, stop_timeout_s=900, max_in_flight=50),
            bus=DeadBus(),
            stop=asyncio.Event(),
            source=source,
        )
    )
    await asyncio.sleep(0.2)
    with caplog.at_level(logging.ERROR, logger="producer.service"):
        producing.cancel()
        await asyncio.wait([producing], timeout=10)
    assert producing.cancelled()
    unconfirmed = 3 if readings else 51
    assert f"stopped by force: {unconfirmed} messages not confirmed by the broker, NOT counted as sent" in caplog.text


def test_loop_shifts_time_forward_and_dead_letters_only_once(tmp_path):
    rows = [GOOD.format(a=i, s=2 * i) for i in range(3)] + ['"current",x,2,,"2022-10-17T12:00:08Z"']
    feed = csv_feed(export(tmp_path, rows), CsvOptions("R", [1, 2, 3], tick_seconds=2.0), loop=True)
    items = list(itertools.islice(feed.items, 10))
    assert sum(isinstance(i, DeadLetter) for i in items) == 1
    stamps = [i.ts for i in items if isinstance(i, Reading)]
    assert stamps == [T0 + timedelta(seconds=2 * i) for i in range(9)]


async def test_synthetic_fleet_with_faults_writes_labels(tmp_path):
    labels = tmp_path / "labels.csv"
    config = settings(
        csv_path=None,
        robots=2,
        faults=True,
        labels_out=labels,
        limit=2 * 1800,
        start_time=datetime(2024, 1, 1, tzinfo=UTC),
    )
    bus = InProcessBus()
    report = await run(config, bus=bus, stop=asyncio.Event(), clock=ManualClock())
    assert report.readings_confirmed == 3600
    written = read_labels(labels)
    assert {lab.robot_id for lab in written} == {"robot-001", "robot-002"}
    assert all(lab.start <= report.last_ts for lab in written)


def test_cli_dry_run_writes_json_lines(tmp_path, capsys):
    path = export(tmp_path, [GOOD.format(a=i, s=2 * i) for i in range(5)] + ['"current",1'])
    code = cli.main(
        ["--csv", str(path), "--dry-run", "--max-speed", "--no-axes-from-db", "--axes", "1-3", "--robot-id", "R7"]
    )
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(lines) == 6
    assert [line["key"] for line in lines] == ["R7"] * 6
    assert lines[0]["value"]["currents"] == {"1": 0.0, "2": 2.0, "3": None}
    assert lines[-1]["topic"] == "axiswatch.dead-letters" and lines[-1]["value"]["line"] == 7
    assert "rejected rows: 1" in err


def test_cli_dry_run_does_not_claim_the_bus_confirmed_anything(tmp_path, capsys):
    path = export(tmp_path, [GOOD.format(a=i, s=2 * i) for i in range(3)] + ['"current",1'])
    argv = ["--csv", str(path), "--dry-run", "--max-speed", "--no-axes-from-db", "--axes", "1-3"]
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert "3 readings written to stdout (dry run: nothing sent)" in err
    assert "confirmed" not in err, err


async def test_cli_max_speed_with_no_known_total_streams_until_stopped(tmp_path, capsys):
    """An endless feed (the synthetic fleet, a looped export) has no total for the progress bar."""
    path = export(tmp_path, [GOOD.format(a=i, s=2 * i) for i in range(5)])
    csv = ["--csv", str(path), "--no-axes-from-db", "--axes", "1-3"]
    for argv in (["--synthetic", "--max-speed"], [*csv, "--loop", "--max-speed"]):
        settings = cli.build_settings(cli.build_parser().parse_args(argv))
        assert settings.max_speed and cli._expected_rows(settings) is None
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.5, stop.set)
        assert await cli._run(settings, stop, dry_run=True) == 0
        out, err = capsys.readouterr()
        sent = len(out.splitlines())
        assert sent > 10, f"{argv}: {sent} messages"
        assert f"{sent} readings written to stdout" in err and "stopped on request" in err


def test_cli_rejects_bad_settings(capsys):
    assert cli.main(["--timezone", "Mars/Olympus", "--dry-run"]) == 2
    assert "unknown time zone" in capsys.readouterr().err
    # infinity once sent the synthetic fleet into a loop that no SIGTERM reached
    assert cli.main(["--synthetic", "--tick-seconds", "inf", "--dry-run", "--limit", "3"]) == 2
    assert "tick_seconds" in capsys.readouterr().err


def test_cli_count_options_read_as_every_count_and_meet_their_settings_bounds(capsys, monkeypatch):
    """--robots, --wear, --start-row and --limit read as consumer_db's counts do (common.counts): a number of
    5,000 digits was "invalid int value" before; now it is MAX_COUNT, and refused by the setting's bound."""
    monkeypatch.setenv("MAX_ROBOTS", str(10**12))
    argv = ["--synthetic", "--max-speed", "--dry-run", "--no-axes-from-db", "--limit", "3"]
    assert cli.main([*argv, "--robots", "9" * 5000]) == 2
    err = capsys.readouterr().err
    assert "robots" in err and "less than or equal to 100000" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as refused:
        cli.main([*argv, "--robots", "-3"])
    assert refused.value.code == 2 and "--robots: must be 1 or more, got -3" in capsys.readouterr().err
    assert cli.main([*argv, "--seed", "-1"]) == 2  # numpy's ValueError traceback before
    assert "seed" in capsys.readouterr().err


def test_cli_refuses_a_fleet_the_services_would_not_take_before_making_it(capsys, monkeypatch):
    """Before, ten million robots went to building their programs (22 GB, killed), and worn robots past the
    fleet's size stopped the producer with a traceback."""
    monkeypatch.setenv("MAX_ROBOTS", "50")
    argv = ["--synthetic", "--max-speed", "--dry-run", "--no-axes-from-db", "--limit", "3"]
    assert cli.main([*argv, "--robots", "1" + "0" * 5]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "ROBOTS (100000) is more than MAX_ROBOTS (50)" in err and "Traceback" not in err
    assert cli.main([*argv, "--robots", "2", "--wear", "3"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "WEAR_ROBOTS (3) is more than the fleet's ROBOTS (2)" in err
    assert cli.main([*argv, "--robots", "50", "--wear", "50"]) == 0  # at the bounds: the whole fleet, all worn
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_cli_refuses_a_stop_timeout_that_cuts_the_wait_for_confirmations_short(capsys, monkeypatch):
    """STOP_TIMEOUT_S at or below SHUTDOWN_TIMEOUT_S: the forced stop would come first, and SHUTDOWN_TIMEOUT_S
    would mean nothing. Before, it was only documented, and the producer started."""
    argv = ["--synthetic", "--max-speed", "--dry-run", "--no-axes-from-db", "--limit", "3"]
    monkeypatch.setenv("SHUTDOWN_TIMEOUT_S", "30")
    for stop_timeout_s in ("30", "5"):
        monkeypatch.setenv("STOP_TIMEOUT_S", stop_timeout_s)
        assert cli.main(argv) == 2
        out, err = capsys.readouterr()
        assert out == "" and f"STOP_TIMEOUT_S ({stop_timeout_s} s) must be more than SHUTDOWN_TIMEOUT_S (30 s)" in err
    monkeypatch.setenv("STOP_TIMEOUT_S", "40")
    assert cli.main(argv) == 0


def test_cli_an_export_as_a_robot_id_the_policy_refuses_sends_nothing_and_says_why(
    tmp_path, capsys, caplog, monkeypatch
):
    """Before, each of the export's rows went to the dead letters, one by one, for the same reason."""
    path = export(tmp_path, [GOOD.format(a=i, s=2 * i) for i in range(5)])
    csv = ["--csv", str(path), "--no-axes-from-db", "--axes", "1-3", "--max-speed", "--dry-run"]
    assert cli.main([*csv, "--robot-id", "robot 7"]) == 1
    assert capsys.readouterr().out == ""
    assert "robot id 'robot 7' does not match ROBOT_ID_PATTERN" in caplog.text
    monkeypatch.setenv("ROBOT_IDS_ALLOWED", "R1,R2")
    assert cli.main([*csv, "--robot-id", "R3"]) == 1
    assert capsys.readouterr().out == ""
    assert "'R3' is not in ROBOT_IDS_ALLOWED" in caplog.text
    assert cli.main([*csv, "--robot-id", "R2"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 5


def test_settings_treat_an_empty_csv_path_as_unset(monkeypatch):
    monkeypatch.setenv("CSV_PATH", "")
    assert ProducerSettings(_env_file=None).csv_path is None


def test_axis_list_comes_from_axes_dim_when_readable(tmp_path, caplog):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("create table axes_dim (robot_id text, axis_id int, label text, unit text, active boolean)"))
        conn.execute(
            text(
                "insert into axes_dim values ('R', 1, 'a1', 'A', 1), ('R', 3, 'a3', 'A', 1), "
                "('R', 4, 'a4', 'A', 0), ('Q', 7, 'a7', 'A', 1)"
            )
        )
    config = ProducerSettings(_env_file=None, database_url=url, axes="1-14")
    assert axis_list(config, ["R"]) == [1, 3]
    assert axis_list(config, ["nobody"]) == list(range(1, 15))
    assert axis_list(config, ["R"], from_db=False) == list(range(1, 15))


def test_axis_list_falls_back_without_table_or_database(tmp_path):
    empty = tmp_path / "empty.sqlite"
    create_engine(f"sqlite:///{empty}").connect().close()
    assert axis_list(ProducerSettings(_env_file=None, database_url=f"sqlite:///{empty}", axes="1-8"), ["R"]) == list(
        range(1, 9)
    )
    missing = tmp_path / "missing.sqlite"
    assert axis_list(ProducerSettings(_env_file=None, database_url=f"sqlite:///{missing}", axes="1-8"), ["R"]) == list(
        range(1, 9)
    )
    assert not missing.exists(), "looking up the axis list must not create a database"
    unreachable = "postgresql+psycopg2://u:p@127.0.0.1:1/db"
    assert axis_list(ProducerSettings(_env_file=None, database_url=unreachable, axes="1-2"), ["R"]) == [1, 2]


async def sent_times(**kw) -> list[tuple[str, float]]:
    """(robot, clock time of its send) for two ticks of a paced 4-robot synthetic fleet on a manual clock."""
    clock, sent = ManualClock(start=0.0), []

    class Recording(InProcessBus):
        async def send(self, topic, key, value, **options):
            sent.append((key, clock.now()))
            return await super().send(topic, key, value, **options)

    config = settings(csv_path=None, robots=4, max_speed=False, limit=8, start_time=T0, **kw)
    await run(config, bus=Recording(), stop=asyncio.Event(), clock=clock)
    return sent


async def test_a_spread_fleet_sends_each_robot_at_its_own_phase_of_the_tick():
    burst, spread = await sent_times(), await sent_times(spread_robots=True)
    assert (
        [robot for robot, _ in spread]
        == [robot for robot, _ in burst]
        == ["robot-001", "robot-002", "robot-003", "robot-004"] * 2
    )
    # in one burst: a tick's four rows at once, the next tick 2 s later
    assert [round(t, 1) for _, t in burst] == [0.0] * 4 + [2.0] * 4
    # spread: robot k a quarter of the tick after robot k-1 (and its own jitter, under 5 % of a tick)
    offsets = [t - (i // 4) * 2.0 - (i % 4) * 0.5 for i, (_, t) in enumerate(spread)]
    assert all(abs(offset) <= 0.1 for offset in offsets), offsets
